"""Sandboxes: VMs started in a fraction of a second from a pre-booted template, with a deadline.

The first sandbox of a shape (image, CPUs, memory, disk) makes that shape's
template (templates.py); every sandbox of the shape is then a clone of it (see
snapshots/operations.py). With ``[sandboxes] pool = N`` in config.toml
(default 1) N sandboxes of each shape in use wait already started (pool.py),
so a sandbox without a requested name is handed out at once; a shape's pool
lapses after ``[sandboxes] pool_idle`` (10m) without such a sandbox asked for.

A sandbox's timeout is the daemon's to enforce: ``expires_at`` is in the
database, and the reaper (policies/reaper.py, policies/leases.py) removes
every sandbox whose deadline passed, whether or not its client is still alive,
and also after a daemon restart.
"""

from __future__ import annotations

import builtins
import secrets
from dataclasses import dataclass, field

from bungalow.daemon.sandboxes.pool import Pool
from bungalow.daemon.sandboxes.templates import Templates
from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms.nics import NetworkChoice
from bungalow.daemon.vms.requests import CloneRequest, CreateRequest, Ownership
from bungalow.errors import UserError


@dataclass(frozen=True)
class SandboxRequest:
    """A sandbox to make; sizes in bytes, ``timeout`` in seconds (None: none)."""

    image: str = "debian-12"
    cpus: int = 1
    memory: int = 512 << 20
    disk: int | None = None
    timeout: float | None = 600.0
    name: str | None = None
    warm: bool = True
    ownership: Ownership = field(default_factory=Ownership)
    #: A private network to put it on (None: user-mode networking).
    network: str | None = None


class Sandboxes:
    def __init__(self, snapshots: Snapshots, templates: Templates, pool: Pool) -> None:
        self.snapshots = snapshots
        self.templates = templates
        self.pool = pool
        self.vms = snapshots.vms
        self.store = snapshots.store

    async def create(self, request: SandboxRequest) -> VmRecord:
        """A sandbox: from the pool, cloned from its shape's template, or booted (``warm``
        False). Its timeout counts from when it is ready. One on a ``network`` is a clone
        with a NIC of its own there (the pool holds only sandboxes without networks)."""
        if request.timeout is not None and request.timeout <= 0:
            raise UserError("A sandbox timeout must be positive, such as 90s, 10m or 1h.")
        name = request.name or f"sb-{secrets.token_hex(4)}"
        # The row has a deadline from its insertion on, so a daemon that dies during the
        # start still reaps it; it is moved to count from the moment the sandbox is ready.
        expires = None if request.timeout is None else self.vms.clock.now() + request.timeout
        networks = () if request.network is None else (NetworkChoice(request.network),)
        if not request.warm:
            create = CreateRequest(
                name=name, image=request.image, cpus=request.cpus, memory=request.memory,
                disk=request.disk, sandbox=True, expires_at=expires,
                ownership=request.ownership, origin=f"image {request.image} (sandbox)",
                networks=networks,
            )  # fmt: skip
            return self._deadline_from_now(await self.vms.create(create), request.timeout)
        template = await self.templates.get(
            request.image, request.cpus, request.memory, request.disk
        )
        await self.pool.drain()  # a template just replaced leaves its pool behind
        if request.name is None and request.ownership.project is None and not networks:
            # Pooled VMs belong to no project: a project's sandbox is always its own clone,
            # and only an ask the pool could answer keeps (or makes) the pool warm.
            pooled = self.pool.claim(template, expires, request.ownership)
            if pooled is not None:
                return pooled
        clone = CloneRequest(
            name=name, parent="", sandbox=True, expires_at=expires, ownership=request.ownership,
            networks=networks,
        )  # fmt: skip
        vm = await self.snapshots.clone_from(template, clone)
        return self._deadline_from_now(vm, request.timeout)

    def _deadline_from_now(self, vm: VmRecord, timeout: float | None) -> VmRecord:
        if timeout is None:
            return vm
        return self.store.vms.set_deadline(vm.id, self.vms.clock.now() + timeout)

    async def fork(self, name: str, count: int) -> builtins.list[VmRecord]:
        """``count`` running copies of the VM ``name`` (1 to 64), each a VM of its own."""
        vm = self.vms.get(name)
        prefix = "sb" if vm.sandbox else name
        names = [f"{prefix}-{secrets.token_hex(4)}" for _ in range(max(count, 0))]
        return await self.snapshots.fork(name, count, names)
