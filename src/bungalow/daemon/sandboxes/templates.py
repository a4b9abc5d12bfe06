"""Sandboxes: VMs started in a fraction of a second from a pre-booted template, with a deadline.

The first sandbox of a shape (image, CPUs, memory, disk) boots a template VM
once, lets the guest settle, snapshots it whole and throws the VM away; every
sandbox of that shape is then a clone of that snapshot (see snapshots.py). A
template is remade when its image, the guest agent, QEMU or the accelerator
changes, since its key names all of them; a replaced template is deleted once
no sandbox stands on it.

With ``[sandboxes] pool = N`` in config.toml (default 1) the daemon keeps N
sandboxes of each shape in use already started (and their first command's code paths warmed),
so a sandbox without a requested name is handed out at once and the pool is
refilled behind it.

A sandbox's timeout is the daemon's to enforce: ``expires_at`` is in the
database, and the reaper (reaper.py, leases.py) removes every sandbox whose
deadline passed, whether or not its client is still alive, and also after a
daemon restart.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import secrets
import shutil
import time
from dataclasses import dataclass, field

from bungalow.daemon.server.config import Config
from bungalow.daemon.snapshots.operations import CloneRequest, Snapshots
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.store import SnapshotRecord, VmRecord
from bungalow.daemon.vms import boot
from bungalow.daemon.vms.manager import VmManager
from bungalow.daemon.vms.requests import CreateRequest
from bungalow.errors import BungalowError, SnapshotError, UserError
from bungalow.host.resources import check_fits
from bungalow.images.store import Image
from bungalow.qemu.accel import probe_accelerator
from bungalow.qemu.argv import kernel_cmdline, random_mac
from bungalow.qemu.process import qemu_version
from bungalow.units import format_size

log = logging.getLogger(__name__)

#: Commands run in a template before it is saved, so that clones find what a first
#: command needs (the shell, python3 and their libraries) already in the guest's cache.
WARM_UP = ("/bin/sh", "-c", "true; python3 -c pass; true")
#: Seconds between handing out a pooled sandbox and starting its replacement, so that
#: the new sandbox's first commands do not compete with the replacement's start.
REFILL_DELAY = 2.0


@dataclass(frozen=True)
class SandboxRequest:
    image: str = "debian-12"
    cpus: int = 1
    memory: int = 512 << 20
    disk: int | None = None
    timeout: float | None = 600.0
    name: str | None = None
    warm: bool = True
    project: str | None = None
    owner: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created_by: str = ""


class Sandboxes:
    def __init__(
        self, manager: VmManager, snapshots: Snapshots, config: Config | None = None
    ) -> None:
        self.m = manager
        self.snapshots = snapshots
        self.store = manager.store
        self.config = config or Config()
        self._template_locks: dict[str, asyncio.Lock] = {}
        self._refills: dict[str, asyncio.Task[None]] = {}

    # -- create --------------------------------------------------------------------------------

    async def create(self, request: SandboxRequest) -> VmRecord:
        if request.timeout is not None and request.timeout <= 0:
            raise UserError("A sandbox timeout must be positive, such as 90s, 10m or 1h.")
        name = request.name or f"sb-{secrets.token_hex(4)}"
        expires = None if request.timeout is None else self.m.clock.now() + request.timeout
        if not request.warm:
            create = CreateRequest(
                name=name,
                image=request.image,
                cpus=request.cpus,
                memory=request.memory,
                disk=request.disk,
                sandbox=True,
                expires_at=expires,
                project=request.project,
                owner=request.owner,
                labels=request.labels,
                created_by=request.created_by,
                origin=f"image {request.image} (sandbox)",
            )
            return self._deadline_from_now(await self.m.create(create), request.timeout)
        template = await self.template(request)
        expires = None if request.timeout is None else self.m.clock.now() + request.timeout
        pooled = None
        if request.name is None and request.project is None:  # pooled VMs belong to no project
            pooled = self.store.claim_pooled(template.id, expires)
        self._refill(template)
        if pooled is not None:
            pooled = pooled.with_changes(
                owner=request.owner, labels=request.labels, created_by=request.created_by
            )
            self.store.update(pooled)
            self.store.add_event(pooled.name, "claimed", "handed out from the warm pool")
            return pooled
        clone = CloneRequest(
            name=name,
            parent="",
            sandbox=True,
            expires_at=expires,
            project=request.project,
            owner=request.owner,
            labels=request.labels,
            created_by=request.created_by,
        )
        vm = await self.snapshots.clone_from(template, clone)
        return self._deadline_from_now(vm, request.timeout)

    def _deadline_from_now(self, vm: VmRecord, timeout: float | None) -> VmRecord:
        """The timeout counts from when the sandbox is ready, not from the request.

        The row had a deadline from its insertion on, so a daemon that died during
        the boot still reaps it.
        """
        if timeout is None:
            return vm
        vm = self.store.get(vm.name).with_changes(expires_at=self.m.clock.now() + timeout)
        self.store.update(vm)
        return vm

    # -- the warm pool -------------------------------------------------------------------------

    def _refill(self, template: SnapshotRecord) -> None:
        """Top the template's pool up in the background (one refill per template at a time)."""
        if self.config.sandbox_pool <= 0:
            return
        running = self._refills.get(template.id)
        if running is not None and not running.done():
            return
        self._refills[template.id] = asyncio.create_task(self._fill(template))

    async def _fill(self, template: SnapshotRecord) -> None:
        await asyncio.sleep(REFILL_DELAY)
        while len(self.store.pooled(template.id)) < self.config.sandbox_pool:
            current = self.store.snapshot_by_id(template.id)
            if current is None or current.template_key is None:
                return  # retired: its pool drains as the VMs are removed
            name = f"sb-{secrets.token_hex(4)}"
            request = CloneRequest(name=name, parent="", sandbox=True, pool=template.id)
            try:
                await self.snapshots.clone_from(template, request)
                # A first command costs a new VM's emulator the translation of the shell's
                # and python3's code; paid here, a claimed sandbox answers at once.
                agent = await self.m.agent(name, "warm the sandbox up")
                await (await agent.exec(list(WARM_UP), timeout=60)).collect()
            except BungalowError as exc:
                log.warning("could not refill the sandbox pool: %s", exc.message)
                return

    async def drain_pools(self) -> None:
        """Remove pooled VMs of templates that are no longer current."""
        for template in self.store.snapshots("", purpose="template"):
            if template.template_key is not None:
                continue
            for vm in self.store.pooled(template.id):
                with contextlib.suppress(BungalowError):
                    await self.m.remove(vm.name)

    async def fork(self, name: str, count: int) -> builtins.list[VmRecord]:
        if not 1 <= count <= 64:
            raise UserError(f"Fork makes 1 to 64 copies at a time; asked for {count}.")
        vm = self.store.get(name)
        prefix = "sb" if vm.sandbox else name
        names = [f"{prefix}-{secrets.token_hex(4)}" for _ in range(count)]
        return await self.snapshots.fork(name, count, names)

    # -- templates -----------------------------------------------------------------------------

    def _key(self, image: Image, request: SandboxRequest, disk: int, accel: str) -> str:
        initrd = self.m.images.initrd_for(image).name
        return "/".join(
            (image.id, initrd, str(request.cpus), str(request.memory), str(disk), accel,
             qemu_version())
        )  # fmt: skip

    async def template(self, request: SandboxRequest) -> SnapshotRecord:
        """The snapshot sandboxes of this shape start from, made on first use."""
        image = self.m.images.get(request.image)
        if image.kind != "linux":
            raise UserError(
                f"The image {image.name} has no bungalow agent, so it cannot run sandboxes; "
                "use a built image such as debian-12."
            )
        disk = request.disk if request.disk is not None else max(image.virtual_size, 4 << 30)
        accel = probe_accelerator().name
        key = self._key(image, request, disk, accel)
        async with self._template_locks.setdefault(key, asyncio.Lock()):
            for existing in self.store.snapshots("", purpose="template"):
                if existing.template_key != key:
                    continue
                try:
                    await self.snapshots.verify(existing, accel)
                    return existing
                except SnapshotError as exc:
                    log.warning("template %s unusable, making another: %s", existing.id, exc)
                    self.store.update_snapshot(existing.with_changes(template_key=None))
            template = await self._make_template(image, request, disk, accel, key)
            self._retire_older(template)
        await self.drain_pools()
        await self.snapshots.collect()
        return template

    def _retire_older(self, template: SnapshotRecord) -> None:
        """Older templates of the same image name and shape are kept only for their clones."""
        for other in self.store.snapshots("", purpose="template"):
            same_shape = (other.vm_name, other.cpus, other.memory, other.disk_size) == (
                template.vm_name, template.cpus, template.memory, template.disk_size,
            )  # fmt: skip
            if other.id != template.id and same_shape and other.template_key is not None:
                self.store.update_snapshot(other.with_changes(template_key=None))

    async def _make_template(
        self, image: Image, request: SandboxRequest, disk: int, accel: str, key: str
    ) -> SnapshotRecord:
        began = time.monotonic()
        check_fits(request.cpus, request.memory, disk, self.m.capacity())
        vm = VmRecord(
            id=f"t{secrets.token_hex(6)}",
            name=f"template-{image.name or image.short_id}",
            state=VmState.RUNNING,
            image_id=image.id,
            image_name=image.name or image.short_id,
            profile="micro",
            cpus=request.cpus,
            memory=request.memory,
            disk_size=disk,
            accel=accel,
            mac=random_mac(),
        )
        vm_dir = self.m.vm_dir(vm)
        await asyncio.to_thread(boot.create_disk, vm_dir, image, disk)
        runtime = None
        try:
            runtime = await boot.boot_until_ready(vm_dir, vm, image, self.m.images, accel)
            assert runtime.agent is not None and runtime.monitor is not None
            session = await runtime.agent.exec(list(WARM_UP), timeout=60)
            await session.collect()
            # Saved with no host connected, a clone's agent is already waiting for one.
            await runtime.agent.close()
            runtime.agent = None
            spec = self.m.spec_for(vm, image, accel)
            vm = vm.with_changes(cmdline=kernel_cmdline(spec))
            snapshot = await self.snapshots.capture(
                vm,
                name=f"template-{secrets.token_hex(3)}",
                purpose="template",
                detached=True,
                monitor=runtime.monitor,
                template_key=key,
            )
        finally:
            if runtime is not None:
                await boot.kill(runtime)
            shutil.rmtree(vm_dir, ignore_errors=True)
        shape = f"{request.cpus} CPU, {format_size(request.memory)}"
        log.info("template for %s (%s) made in %.1fs", image.name, shape, time.monotonic() - began)
        self.store.add_event(None, "template", f"sandbox template for {image.name} ({shape}) made")
        return snapshot
