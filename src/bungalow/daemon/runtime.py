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
    #: Set when the daemon itself is stopping or removing the VM, so that the
    #: watcher does not report the exit as a failure.
    expected_exit: bool = False
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    async def close_channels(self) -> None:
        if self.agent is not None:
            with contextlib.suppress(Exception):
                await self.agent.close()
            self.agent = None
        if self.monitor is not None:
            with contextlib.suppress(Exception):
                await self.monitor.close()
            self.monitor = None
