"""Each metrics sample, as something to wait for: the dashboard's live updates follow it.

:class:`SampleTicks` is one of the metrics' listeners (server/wiring.py hands it to
:class:`~bungalow.daemon.telemetry.metrics.Metrics`); :meth:`SampleTicks.wait` returns
after the next sample of every running VM, so that whoever follows the samples wakes
no more often than they are taken.
"""

from __future__ import annotations

import asyncio

from bungalow.daemon.state.records import VmRecord


class SampleTicks:
    def __init__(self) -> None:
        self._next: asyncio.Event | None = None

    async def notice(
        self, _rates: dict[str, dict[str, float]], _running: dict[str, VmRecord]
    ) -> None:
        """A sample was taken: wake every waiter."""
        if self._next is not None:
            self._next.set()
            self._next = None

    async def wait(self) -> None:
        """Return after the next sample is taken."""
        if self._next is None:
            self._next = asyncio.Event()
        await self._next.wait()
