"""Where a VM's boot spends its time: named instants, logged as phases once it runs.

A request that boots a VM opens a :class:`BootTimeline` with :func:`timing`;
the steps it passes through call :func:`mark` as each phase ends (nothing is
recorded when no timeline is open: a VM started by a policy, say). Once the VM
runs, bungalowd logs one line per boot::

    web booted: received=81234.567890 api=0.004 disk=0.031 spec=0.001 qemu=0.118
    guest=3.905 limits=0.004 ready=0.012 (attempt 1)

``received`` is when the request reached the VM service, in seconds of the
host's ``CLOCK_MONOTONIC`` (Python's ``time.monotonic()`` on Linux), which
every process on the host shares, so a client can line its own instants up
with the daemon's; each phase is the seconds since the phase before it
(docs/architecture.md, "The life of a request", says what each covers).
bench/boot.py reads these lines to say where a boot's time goes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class BootTimeline:
    """The monotonic instant a boot request arrived and the instant each phase ended."""

    received: float = field(default_factory=time.monotonic)
    ends: dict[str, float] = field(default_factory=dict)
    attempt: int = 1

    def mark(self, phase: str) -> None:
        """``phase`` ends now; a phase marked again (a retried boot) keeps its latest end."""
        self.ends[phase] = time.monotonic()

    def durations(self) -> dict[str, float]:
        """Seconds each marked phase took, since the end of the phase marked before it."""
        spent, previous = {}, self.received
        for phase, end in sorted(self.ends.items(), key=lambda item: item[1]):
            spent[phase], previous = end - previous, end
        return spent

    def describe(self) -> str:
        """The log line's text: ``received=`` then ``phase=seconds`` pairs, in order."""
        pairs = " ".join(f"{phase}={seconds:.3f}" for phase, seconds in self.durations().items())
        return f"received={self.received:.6f} {pairs} (attempt {self.attempt})"


_CURRENT: ContextVar[BootTimeline | None] = ContextVar("bungalow_boot_timeline", default=None)


@contextlib.contextmanager
def timing() -> Iterator[BootTimeline]:
    """Open a timeline for the boot the block performs; :func:`mark` calls inside record."""
    timeline = BootTimeline()
    token = _CURRENT.set(timeline)
    try:
        yield timeline
    finally:
        _CURRENT.reset(token)


def mark(phase: str) -> None:
    """End ``phase`` of the boot under way in this task, if a timeline is open."""
    timeline = _CURRENT.get()
    if timeline is not None:
        timeline.mark(phase)


def retried(attempt: int) -> None:
    """The boot under way starts its ``attempt``-th try (counted from 1)."""
    timeline = _CURRENT.get()
    if timeline is not None:
        timeline.attempt = attempt
