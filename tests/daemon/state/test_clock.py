"""The test clock the daemon reads: a file holding an offset in seconds."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bungalow.daemon.state.clock import Clock, advance


def test_a_clock_without_a_file_is_the_hosts() -> None:
    before = time.time()
    assert before <= Clock().now() <= time.time()


def test_advancing_is_seen_even_within_one_tick_of_the_files_mtime(tmp_path: Path) -> None:
    offset = tmp_path / "clock"
    offset.write_text("0\n")
    clock = Clock(offset)
    assert clock.offset() == 0.0  # read once, and cached by the file's identity
    stamp = offset.stat().st_mtime_ns
    advance(offset, 1860)
    # The kernel's file times move in ticks: a rewrite within one keeps the mtime.
    os.utime(offset, ns=(stamp, stamp))
    assert clock.offset() == 1860.0
    advance(offset, 60)
    assert Clock(offset).offset() == clock.offset() == 1920.0
    assert list(tmp_path.iterdir()) == [offset]  # nothing left beside it


def test_an_unreadable_offset_keeps_the_last_good_one(tmp_path: Path) -> None:
    offset = tmp_path / "clock"
    offset.write_text("30\n")
    clock = Clock(offset)
    assert clock.offset() == 30.0
    offset.unlink()
    assert clock.offset() == 30.0
