"""Sandbox templates: for each shape, a VM booted once, warmed up, saved, and thrown away.

A template is a detached snapshot of purpose ``template``; its ``template_key``
names everything the saved machine depends on (image, agent initramfs, CPUs,
memory, disk, accelerator, QEMU version), so a change to any of them makes a
new template and retires the old one, which is deleted once no sandbox
stands on it (snapshots/keeper.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import Purpose, SnapshotRecord, VmRecord
from bungalow.daemon.vms.plan import disk_size
from bungalow.daemon.vms.transient import transient
from bungalow.errors import SnapshotError, UserError
from bungalow.images.store import Image
from bungalow.qemu.argv import kernel_cmdline, random_mac
from bungalow.units import format_size

log = logging.getLogger(__name__)

#: Commands run in a template before it is saved, so that clones find what a first
#: command needs (the shell, python3 and their libraries) already in the guest's cache.
WARM_UP = ("/bin/sh", "-c", "true; python3 -c pass; true")


class Templates:
    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots
        self.vms = snapshots.vms
        self.store = snapshots.store
        self._locks: dict[str, asyncio.Lock] = {}

    def _key(self, image: Image, cpus: int, memory: int, disk: int, accel: str) -> str:
        initrd = self.vms.images.initrd_for(image).name
        return "/".join(
            (image.id, initrd, str(cpus), str(memory), str(disk), accel,
             self.vms.host.qemu_version)
        )  # fmt: skip

    async def get(self, image_ref: str, cpus: int, memory: int, disk: int | None) -> SnapshotRecord:
        """The snapshot sandboxes of this shape start from, made on first use."""
        image = self.vms.images.get(image_ref)
        if image.kind != "linux":
            raise UserError(
                f"The image {image.name} has no bungalow agent, so it cannot run sandboxes; "
                "use a built image such as debian-12."
            )
        size = disk_size(disk, image)
        accel = self.vms.host.accel()
        key = await asyncio.to_thread(self._key, image, cpus, memory, size, accel)
        async with self._locks.setdefault(key, asyncio.Lock()):
            for existing in self.store.snapshots.list("", purpose=Purpose.TEMPLATE):
                if existing.template_key != key:
                    continue
                try:
                    await self.snapshots.verify(existing, accel)
                    return existing
                except SnapshotError as exc:
                    log.warning("template %s unusable, making another: %s", existing.id, exc)
                    self.store.snapshots.retire_template(existing.id)
            template = await self._make(image, cpus, memory, size, accel, key)
            self._retire_older(template)
        await self.snapshots.keeper.collect()
        return template

    def current(self, template: SnapshotRecord) -> bool:
        """Whether new sandboxes still start from ``template``."""
        now = self.store.snapshots.by_id(template.id)
        return now is not None and now.template_key is not None

    def _retire_older(self, template: SnapshotRecord) -> None:
        """Older templates of the same image name and shape are kept only for their clones."""
        for other in self.store.snapshots.list("", purpose=Purpose.TEMPLATE):
            same_shape = (other.vm_name, other.cpus, other.memory, other.disk_size) == (
                template.vm_name, template.cpus, template.memory, template.disk_size,
            )  # fmt: skip
            if other.id != template.id and same_shape and other.template_key is not None:
                self.store.snapshots.retire_template(other.id)

    async def _make(
        self, image: Image, cpus: int, memory: int, disk: int, accel: str, key: str
    ) -> SnapshotRecord:
        began = time.monotonic()
        vm = VmRecord(
            id=f"t{secrets.token_hex(6)}",
            name=f"template-{image.name or image.short_id}",
            state=VmState.RUNNING,
            image_id=image.id,
            image_name=image.name or image.short_id,
            profile="micro",
            cpus=cpus,
            memory=memory,
            disk_size=disk,
            accel=accel,
            mac=random_mac(),
        )
        async with transient(self.vms, vm, image, accel) as (runtime, spec):
            assert runtime.agent is not None and runtime.monitor is not None
            session = await runtime.agent.exec(list(WARM_UP), timeout=60)
            await session.collect()
            # Saved with no host connected, a clone's agent is already waiting for one.
            await runtime.agent.close()
            runtime.agent = None
            vm = vm.with_changes(cmdline=kernel_cmdline(spec))
            snapshot = await self.snapshots.capture_transient(
                vm, runtime.monitor, name=f"template-{secrets.token_hex(3)}", template_key=key
            )
        shape = f"{cpus} CPU, {format_size(memory)}"
        log.info("template for %s (%s) made in %.1fs", image.name, shape, time.monotonic() - began)
        self.store.events.add(None, "template", f"sandbox template for {image.name} ({shape}) made")
        return snapshot
