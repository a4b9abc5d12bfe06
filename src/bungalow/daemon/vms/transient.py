"""A VM with no row: booted for a moment (a sandbox template being made), then gone.

It is admitted like any VM and counted in the host's allocation while it runs
(``Admission.reserve``); its directory, ``vms/t<id>``, is named by no row, so a
daemon killed while one runs ends its QEMU and removes it at the next start
(vms/recovery.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator

from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms import boot
from bungalow.daemon.vms.manager import VmManager
from bungalow.daemon.vms.runtime import VmRuntime
from bungalow.host import processes
from bungalow.images.store import Image
from bungalow.qemu.argv import MachineSpec


@contextlib.asynccontextmanager
async def transient(
    vms: VmManager, vm: VmRecord, image: Image, accel: str
) -> AsyncIterator[tuple[VmRuntime, MachineSpec]]:
    """Boot ``vm`` (never stored) for the block; its QEMU and files are gone afterwards.

    CapacityError when the host has no room for it, QemuError when it does not boot.
    """
    vms.admission.check(vm, creating=True)
    with vms.admission.reserve(vm):
        vm_dir = vms.vm_dir(vm)
        runtime = None
        try:
            await asyncio.to_thread(boot.create_disk, vm_dir, image.disk, vm.disk_size)
            spec = await asyncio.to_thread(vms.spec_for, vm, image, accel)
            runtime = await boot.boot_until_ready(spec, image, None)
            yield runtime, spec
        finally:
            if runtime is not None:
                await boot.kill(runtime)
            await asyncio.to_thread(processes.end_all, vm_dir / "run")
            await asyncio.to_thread(shutil.rmtree, vm_dir, True)
