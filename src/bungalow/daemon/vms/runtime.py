"""What exists of a VM only while its QEMU runs: the process, its monitor and its agent.

A :class:`VmRuntime` is rebuilt from the pid in the database when the daemon
restarts; nothing in it needs to survive the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from bungalow.daemon.vms.vnc_relay import VncRelay
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
    #: Why QEMU holds the guest paused on its own after a disk write failed, while it does:
    #: ``nospace`` (the host's file system is full; QEMU's default ``werror=enospc``) or the
    #: error QEMU gave. Set from a ``BLOCK_IO_ERROR`` event (or a run state of ``io-error``
    #: found when adopting); cleared when the VM is continued.
    io_error: str | None = None
    #: Set with :attr:`io_error`, for the VM service's watcher to record the pause.
    io_stopped: asyncio.Event = field(default_factory=asyncio.Event)
    #: Held while keys are pressed, so that two ``type`` calls do not interleave their keys.
    keyboard: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The one-time VNC listener ``bungalow vnc`` opened last, if any (vnc_relay.py).
    vnc_relay: VncRelay | None = None
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
                elif event.name == "BLOCK_IO_ERROR" and event.data.get("action") == "stop":
                    self.held_by_io_error(
                        "nospace" if event.data.get("nospace") else str(event.data.get("reason"))
                    )

    def held_by_io_error(self, error: str) -> None:
        """QEMU stopped the guest because a disk request failed with ``error``."""
        self.io_error = error
        self.io_stopped.set()

    async def close_channels(self) -> None:
        if self.vnc_relay is not None:
            await self.vnc_relay.close()
            self.vnc_relay = None
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
