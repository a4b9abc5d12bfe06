"""The reaper: the daemon's task that carries out leases, idleness and retention on a schedule.

Every ``[reaper] interval`` (1m) it records activity and acts on idle VMs,
deletes deleted VMs' saves whose retention ended, and continues the VMs QEMU
held paused when the host's disk filled up, once there is room again
(vms/diskfull.py: the guest's write was only held, so carrying on loses
nothing, and a VM that fills the disk again is paused again). Lease warnings
and actions are kept to the second (sandbox timeouts are short), and so are
warm pools lapsing (sandboxes/pool.py, handed in as ``lapse_pools``: a pooled
VM's deadline is among the lease moments the reaper wakes for); so it also
wakes for the next lease moment. Everything it does goes to the audit log
under the policy that did it. It reads every date through the daemon's Clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bungalow.daemon.policies.idle import Idleness
from bungalow.daemon.policies.leases import Leases
from bungalow.daemon.policies.restorable import Restorable
from bungalow.daemon.state.audit import acting_as
from bungalow.daemon.state.clock import Clock

log = logging.getLogger(__name__)

#: The longest the reaper sleeps between looks at leases (a test clock may jump meanwhile).
LEASE_LOOK = 1.0
#: A chore of the reaper's another room does: the names of the VMs it acted on.
Chore = Callable[[], Awaitable[list[str]]]


async def _nothing() -> list[str]:
    return []


@dataclass
class Reaper:
    leases: Leases
    idleness: Idleness
    restorable: Restorable
    clock: Clock
    interval: float
    #: Removes pooled sandboxes whose pool went unused (sandboxes/pool.py ``Pool.lapse``).
    lapse_pools: Chore = _nothing
    #: Continues VMs held for want of disk space, if there is room (``VmManager.resume_held``).
    resume_held: Chore = _nothing
    _last_full: float = float("-inf")

    async def tick(self) -> None:
        await self.leases.tick()
        await self.lapse_pools()
        now = self.clock.now()
        if now - self._last_full < self.interval and now >= self._last_full:
            return
        self._last_full = now
        await self.idleness.tick()
        with acting_as("policy retention", "its retention ended"):
            await self.restorable.expire()
        with acting_as("policy disk-full", "the host's disk has room again"):
            await self.resume_held()

    async def run(self) -> None:
        """Tick for as long as the daemon runs; one failed tick does not stop it."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("the reaper's tick failed")
            wait = min(LEASE_LOOK, self.interval)
            due = self.leases.next_due()
            if due is not None:
                wait = min(wait, max(0.05, due - self.clock.now()))
            await asyncio.sleep(wait)
