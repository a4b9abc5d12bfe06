"""Suspend: free a VM's memory and CPU but keep the running machine, like ``virsh managedsave``.

The VM is saved whole (memory, devices, disk) into a snapshot of purpose
``suspend`` and its QEMU ends; the VM shows ``suspended`` and holds only disk.
``start`` (or ``resume``) carries on from that snapshot: its disk copy is put
in place (the guest may have written a little between the save and the end
of QEMU) and QEMU starts from the saved memory, about 0.1 s to a running
guest whose processes never noticed. The snapshot is deleted once the VM runs.
A wake that fails leaves the VM ``failed`` with its saved state kept, and the
next ``start`` tries it again, as libvirt's managed save does.

:meth:`Suspender.start` and :meth:`Suspender.resume` are how the API starts
and resumes any VM: they wake a VM with a saved state and hand every other
to the VM service.
"""

from __future__ import annotations

import asyncio
import os
import secrets

from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.state.lifecycle import VmState, transition
from bungalow.daemon.state.records import Operation, Purpose, SnapshotRecord, VmRecord
from bungalow.daemon.vms import firmware as firmware_files
from bungalow.daemon.vms.manager import message_of
from bungalow.errors import SnapshotError
from bungalow.host.files import sparse_copy
from bungalow.units import format_size

#: States from which ``start`` carries on from a saved state, when there is one.
_WAKEABLE = (VmState.SUSPENDED, VmState.FAILED)


class Suspender:
    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots
        self.vms = snapshots.vms
        self.store = snapshots.store

    def saved_state(self, vm: VmRecord) -> SnapshotRecord | None:
        saved = self.store.snapshots.list(vm.id, purpose=Purpose.SUSPEND)
        return saved[-1] if saved else None

    def _wakes(self, name: str) -> bool:
        vm = self.vms.get(name)
        return vm.state in _WAKEABLE and self.saved_state(vm) is not None

    async def start(self, name: str) -> VmRecord:
        """Start the VM ``name``: from its saved state if it has one, else by booting it."""
        if self._wakes(name):
            return await self.wake(name)
        return await self.vms.start(name)

    async def resume(self, name: str) -> VmRecord:
        """Resume a paused VM, or carry a suspended one on from its saved state."""
        if self._wakes(name):
            return await self.wake(name)
        return await self.vms.resume(name)

    async def suspend(self, name: str) -> VmRecord:
        async with self.vms.locked(name):
            vm = self.vms.get(name)
            transition(name, vm.state, VmState.SUSPENDED)
            vm = self.store.vms.begin(vm.id, Operation.SUSPEND)
            try:
                for stale in self.store.snapshots.list(vm.id, purpose=Purpose.SUSPEND):
                    await self.snapshots.keeper.discard(stale)
                snapshot = await self.snapshots.capture(
                    vm, name=f"suspend-{secrets.token_hex(4)}", purpose=Purpose.SUSPEND
                )
                await self.vms.end_qemu(vm)
                vm = self.store.vms.set_state(vm.id, VmState.SUSPENDED, pid=None, operation=None)
            finally:
                self.store.vms.end(vm.id)
            self.store.events.add(
                name, "suspended", f"suspended: state saved ({format_size(snapshot.size)}), "
                "memory and CPU freed",
            )  # fmt: skip
            return vm

    async def wake(self, name: str) -> VmRecord:
        """Run a suspended VM again from its saved state."""
        async with self.vms.locked(name):
            vm = self.vms.get(name)
            transition(name, vm.state, VmState.STARTING)
            snapshot = self.saved_state(vm)
            if snapshot is None:
                raise SnapshotError(
                    f"The saved state of the suspended VM {name} is gone; remove it with "
                    f"`bungalow rm {name}`."
                )
            self.vms.admission.check(vm, creating=False)
            image = await self.snapshots.verify(snapshot, self.vms.accel_for(vm))
            vm = self.store.vms.begin(vm.id, Operation.WAKE)
            try:
                vm_dir = self.vms.vm_dir(vm)
                staged = vm_dir / "disk.qcow2.wake"
                source = self.snapshots.keeper.directory(snapshot) / "disk.qcow2"
                await asyncio.to_thread(sparse_copy, source, staged)
                os.replace(staged, vm_dir / "disk.qcow2")
                try:
                    with firmware_files.swapped_in(snapshot, source.parent, vm_dir):
                        vm = await self.snapshots.start_from(vm, snapshot, image, identity=False)
                except BaseException as exc:
                    message = (
                        f"could not carry on from its saved state ({message_of(exc)}); "
                        f"`bungalow start {name}` tries again"
                    )
                    current = self.store.vms.by_id(vm.id)
                    if current is not None and current.state is VmState.STARTING:
                        self.store.vms.set_state(vm.id, VmState.FAILED, pid=None, error=message)
                    self.store.events.add(name, "wake-failed", message)
                    raise
                await self.snapshots.keeper.discard(snapshot)
            finally:
                self.store.vms.end(vm.id)
            self.store.events.add(name, "resumed", "running again from its suspended state")
            return self.vms.get(name)
