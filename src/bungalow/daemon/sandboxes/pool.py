"""The warm pool: sandboxes of each shape in use, started and waiting to be handed out.

``[sandboxes] pool = N`` keeps N started clones of each current template
(their first command's code already translated by TCG), so an unnamed
``Sandbox()`` takes one in about 10 ms and the pool is refilled behind it. A
pooled VM has ``pool`` set to its template's id and belongs to no project;
claiming it clears that and gives it its owner and deadline, in one write.

A pool costs nothing when unused: a pooled VM's ``expires_at`` is when its
shape's pool lapses, ``[sandboxes] pool_idle`` (10m) after the last sandbox of
that shape was asked for (every ask moves it for the whole pool), and the
reaper removes it then (:meth:`Pool.lapse`); the next ask clones afresh and
fills the pool again. Only asks a pooled VM could answer count: a named
sandbox, or a project's, is a clone of its own and fills no pool. Pooled VMs
of a retired template are removed (:meth:`Pool.drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from bungalow.daemon.sandboxes.templates import WARM_UP, Templates
from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.state.audit import acting_as
from bungalow.daemon.state.records import Purpose, SnapshotRecord, VmRecord
from bungalow.daemon.vms.requests import CloneRequest, Ownership
from bungalow.errors import BungalowError
from bungalow.units import format_span

log = logging.getLogger(__name__)

#: Seconds between handing out a pooled sandbox and starting its replacement, so that
#: the new sandbox's first commands do not compete with the replacement's start.
REFILL_DELAY = 2.0


class Pool:
    """``size`` started sandboxes per shape in use; a shape's pool lapses after ``idle``
    seconds without an ask."""

    def __init__(self, snapshots: Snapshots, templates: Templates, size: int, idle: float) -> None:
        self.snapshots = snapshots
        self.templates = templates
        self.vms = snapshots.vms
        self.store = snapshots.store
        self.clock = snapshots.vms.clock
        self.size = size
        self.idle = idle
        self._refills: dict[str, asyncio.Task[None]] = {}

    def claim(
        self, template: SnapshotRecord, expires_at: float | None, ownership: Ownership
    ) -> VmRecord | None:
        """A started sandbox of ``template``'s shape, now the caller's; None if none waits.

        Either way the shape is in use: its pool's lapse moves to ``idle`` from now, and
        the pool is topped up behind the caller."""
        vm = self.store.vms.claim_pooled(
            template.id, expires_at=expires_at, owner=ownership.owner,
            labels=ownership.labels, created_by=ownership.created_by,
        )  # fmt: skip
        lapses = self.clock.now() + self.idle
        for waiting in self.store.vms.pooled(template.id):
            self.store.vms.set_deadline(waiting.id, lapses)
        self.refill(template)
        if vm is not None:
            self.store.events.add(vm.name, "claimed", "handed out from the warm pool")
        return vm

    def lapses_at(self, vm: VmRecord) -> float:
        """When the pooled ``vm`` goes unless its shape is asked for (rows made before pools
        lapsed have no deadline: ``idle`` after they were made)."""
        return vm.expires_at if vm.expires_at is not None else vm.created + self.idle

    async def lapse(self) -> list[str]:
        """Remove the pooled VMs whose pool went unused past ``idle`` (the reaper's call,
        every tick); the names removed."""
        now = self.clock.now()
        removed = []
        for vm in self.store.vms.list():
            if vm.pool is None or now < self.lapses_at(vm):
                continue
            why = f"no sandbox of its shape was asked for in {format_span(self.idle)}"
            with acting_as("policy pool", why):
                try:
                    gone = await self.vms.remove(vm.name, only_if=self._lapsed)
                except BungalowError as exc:
                    log.warning("could not let the pooled %s lapse: %s", vm.name, exc.message)
                    continue
                if gone:
                    self.store.events.add(vm.name, "lapsed", f"the warm pool lapsed: {why}")
                    removed.append(vm.name)
        return removed

    def _lapsed(self, vm: VmRecord) -> bool:
        """Still pooled (not claimed meanwhile), idle past its lapse, and not being made."""
        return (
            vm.pool is not None
            and vm.operation is None
            and self.clock.now() >= (self.lapses_at(vm))
        )

    def refill(self, template: SnapshotRecord) -> None:
        """Top the template's pool up in the background (one refill per template at a time)."""
        if self.size <= 0:
            return
        running = self._refills.get(template.id)
        if running is not None and not running.done():
            return
        self._refills[template.id] = asyncio.create_task(self._fill(template))

    async def _fill(self, template: SnapshotRecord) -> None:
        await asyncio.sleep(REFILL_DELAY)
        while len(self.store.vms.pooled(template.id)) < self.size:
            if not self.templates.current(template):
                return  # retired: its pool drains as the VMs are removed
            name = f"sb-{secrets.token_hex(4)}"
            lapses = self.clock.now() + self.idle
            request = CloneRequest(
                name=name, parent="", sandbox=True, pool=template.id, expires_at=lapses
            )
            try:
                await self.snapshots.clone_from(template, request)
                # A first command costs a new VM's emulator the translation of the shell's
                # and python3's code; paid here, a claimed sandbox answers at once.
                agent = await self.vms.agent(name, "warm the sandbox up")
                await (await agent.exec(list(WARM_UP), timeout=60)).collect()
            except BungalowError as exc:
                log.warning("could not refill the sandbox pool: %s", exc.message)
                return

    async def drain(self) -> None:
        """Remove pooled VMs of templates that are no longer current."""
        for template in self.store.snapshots.list("", purpose=Purpose.TEMPLATE):
            if template.template_key is not None:
                continue
            for vm in self.store.vms.pooled(template.id):
                with contextlib.suppress(BungalowError):
                    await self.vms.remove(vm.name)

    async def close(self) -> None:
        """Stop refilling (the daemon is going); a clone cut short is rolled back at the
        next start (vms/recovery.py)."""
        for task in self._refills.values():
            task.cancel()
        for task in self._refills.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._refills.clear()
