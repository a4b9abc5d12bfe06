"""The warm pool: sandboxes of each shape in use, started and waiting to be handed out.

``[sandboxes] pool = N`` keeps N started clones of each current template
(their first command's code already translated by TCG), so an unnamed
``Sandbox()`` takes one in about 10 ms and the pool is refilled behind it. A
pooled VM has ``pool`` set to its template's id and belongs to no project;
claiming it clears that and gives it its owner and deadline, in one write.
Pooled VMs of a retired template are removed (:meth:`Pool.drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from bungalow.daemon.sandboxes.templates import WARM_UP, Templates
from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.state.records import Purpose, SnapshotRecord, VmRecord
from bungalow.daemon.vms.requests import CloneRequest, Ownership
from bungalow.errors import BungalowError

log = logging.getLogger(__name__)

#: Seconds between handing out a pooled sandbox and starting its replacement, so that
#: the new sandbox's first commands do not compete with the replacement's start.
REFILL_DELAY = 2.0


class Pool:
    def __init__(self, snapshots: Snapshots, templates: Templates, size: int) -> None:
        self.snapshots = snapshots
        self.templates = templates
        self.vms = snapshots.vms
        self.store = snapshots.store
        self.size = size
        self._refills: dict[str, asyncio.Task[None]] = {}

    def claim(
        self, template: SnapshotRecord, expires_at: float | None, ownership: Ownership
    ) -> VmRecord | None:
        """A started sandbox of ``template``'s shape, now the caller's; None if none waits."""
        vm = self.store.vms.claim_pooled(
            template.id, expires_at=expires_at, owner=ownership.owner,
            labels=ownership.labels, created_by=ownership.created_by,
        )  # fmt: skip
        self.refill(template)
        if vm is not None:
            self.store.events.add(vm.name, "claimed", "handed out from the warm pool")
        return vm

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
            request = CloneRequest(name=name, parent="", sandbox=True, pool=template.id)
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
