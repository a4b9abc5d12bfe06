"""What exists of a VM only while its QEMU runs: the process, its monitor and its agent.

A :class:`VmRuntime` is rebuilt from the pid in the database when the daemon
restarts; nothing in it needs to survive the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from bungalow.guest.channel import AgentChannel
from bungalow.qemu.monitor import Monitor


@dataclass
class VmRuntime:
    pid: int
    run_dir: Path
    monitor: Monitor | None = None
    agent: AgentChannel | None = None
    watcher: asyncio.Task[None] | None = None
    #: Collects (and replaces) the network shaper of a VM that has one (netshaping.py).
    shaper_watcher: asyncio.Task[None] | None = None
    #: Set when the daemon itself is stopping or removing the VM, so that the
    #: watcher does not report the exit as a failure.
    expected_exit: bool = False
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    #: The ``reason`` of the SHUTDOWN event QMP reported, if any: ``guest-shutdown`` (it
    #: powered itself off), ``guest-reset`` or ``guest-panic`` (with -no-reboot a reset or
    #: a panic also ends QEMU, with status 0), ``host-signal``...
    shutdown_reason: str | None = None
    _event_task: asyncio.Task[None] | None = None

    def attach_monitor(self, monitor: Monitor) -> None:
        """Keep the monitor and follow its events, to learn why QEMU will exit."""
        self.monitor = monitor
        self._event_task = asyncio.create_task(self._follow_events(monitor))

    async def _follow_events(self, monitor: Monitor) -> None:
        with contextlib.suppress(Exception):
            async for event in monitor.events():
                if event.name == "SHUTDOWN":
                    self.shutdown_reason = str(event.data.get("reason", ""))

    async def close_channels(self) -> None:
        if self.shaper_watcher is not None:
            self.shaper_watcher.cancel()
            self.shaper_watcher = None
        if self._event_task is not None:
            self._event_task.cancel()
            self._event_task = None
        if self.agent is not None:
            with contextlib.suppress(Exception):
                await self.agent.close()
            self.agent = None
        if self.monitor is not None:
            with contextlib.suppress(Exception):
                await self.monitor.close()
            self.monitor = None
