"""The wall clock the daemon's policies read: leases, idleness, cost, the reaper.

Everything that decides by the date asks a :class:`Clock` instead of calling
``time.time()``, so tests can move time forward in a real daemon without
waiting hours. ``BUNGALOW_TEST_CLOCK`` names a file holding a number of
seconds; the clock runs that far ahead of the host's. Without it the clock is
the host's own. Intervals measured inside one process (timeouts, sampling)
keep using ``time.monotonic()``: they are not dates.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CLOCK_ENV = "BUNGALOW_TEST_CLOCK"


class Clock:
    """Seconds since the epoch, possibly shifted by the offset in ``offset_file``."""

    def __init__(self, offset_file: Path | None = None) -> None:
        self.offset_file = offset_file
        self._cached: tuple[tuple[int, int], float] | None = None  # ((inode, mtime), offset)

    @classmethod
    def from_environment(cls) -> Clock:
        path = os.environ.get(CLOCK_ENV)
        return cls(Path(path) if path else None)

    def now(self) -> float:
        return time.time() + self.offset()

    def offset(self) -> float:
        if self.offset_file is None:
            return 0.0
        try:
            found = self.offset_file.stat()
            version = (found.st_ino, found.st_mtime_ns)
            if self._cached is None or self._cached[0] != version:
                self._cached = (version, float(self.offset_file.read_text().strip() or 0))
        except (OSError, ValueError):
            return 0.0 if self._cached is None else self._cached[1]
        return self._cached[1]


def advance(offset_file: Path, seconds: float) -> None:
    """Move a test clock ``seconds`` further ahead (the file is read on every ``now()``).

    The new offset is written beside the file and renamed over it: a daemon reading
    in between sees the old offset or the new one, never an empty file, and the new
    inode tells its cache the file changed even within one tick of the file's mtime.
    """
    try:
        current = float(offset_file.read_text().strip() or 0)
    except (OSError, ValueError):
        current = 0.0
    written = offset_file.with_name(offset_file.name + ".new")
    written.write_text(f"{current + seconds}\n")
    os.replace(written, offset_file)
