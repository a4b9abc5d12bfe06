"""After a daemon (re)start: settle what snapshot work an earlier daemon left half done.

Runs before the VM recovery (vms/recovery.py), in this order:

1. every converter QEMU (its pidfile in ``snapshots/<id>/convert``) is ended:
   it may hold the disk of the VM it was saving, which must be free before
   that VM continues;
2. snapshot directories no row names (a capture cut short) are removed;
3. each VM whose row names a snapshot operation is brought to a plain state:

   - ``snapshot``: the VM carries on as it was (the VM recovery adopts it and
     cancels the migration the save had under way);
   - ``suspend``: if its saved state was recorded, the suspend is finished
     (QEMU ended, ``suspended``); otherwise it carries on running;
   - ``wake``: a VM already running, or whose QEMU runs the guest again with its
     agent answering, is adopted and its saved state deleted; otherwise its QEMU
     is ended and it is ``failed`` with the saved state kept, so ``start`` tries
     again;
   - ``restore``: a VM already running from the snapshot is adopted; otherwise
     its QEMU is ended, its own disk put back, and an interrupted start is
     ``failed``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil

from bungalow.daemon.snapshots.operations import KEPT, STAGED
from bungalow.daemon.snapshots.suspend import Suspender
from bungalow.daemon.state.lifecycle import VmState, can_transition
from bungalow.daemon.state.records import Operation, VmRecord
from bungalow.daemon.vms import boot
from bungalow.host import processes

log = logging.getLogger(__name__)

_SNAPSHOT_OPERATIONS = (Operation.SNAPSHOT, Operation.SUSPEND, Operation.WAKE, Operation.RESTORE)


class SnapshotRecovery:
    def __init__(self, suspender: Suspender) -> None:
        self.suspender = suspender
        self.snapshots = suspender.snapshots
        self.vms = suspender.vms
        self.store = suspender.store

    async def run(self) -> None:
        await self._end_converters()
        for directory in self.snapshots.keeper.orphan_directories():
            await asyncio.to_thread(shutil.rmtree, directory, True)
            log.info("removed the leftover snapshot directory %s", directory.name)
        for vm in self.store.vms.list():
            if vm.operation in _SNAPSHOT_OPERATIONS:
                async with self.vms.locked(vm.name):
                    await self._settle(vm)

    async def _end_converters(self) -> None:
        ended = await asyncio.to_thread(processes.end_all, self.vms.data.snapshots)
        for process in ended:
            snapshot_dir = process.run_dir.parent.name
            self.store.events.add(
                None, "process-ended", f"ended a snapshot's converter "
                f"{'QEMU' if process.is_qemu else process.program} (pid {process.pid}, "
                f"snapshot directory {snapshot_dir}): its save was cut short",
            )  # fmt: skip

    async def _settle(self, vm: VmRecord) -> None:
        operation = vm.operation
        running = vm.state in (VmState.RUNNING, VmState.PAUSED)
        if operation is Operation.SNAPSHOT:
            self._note(vm, "its snapshot was cut short when bungalowd stopped; it carries on")
        elif operation is Operation.SUSPEND:
            saved = self.suspender.saved_state(vm)
            if saved is not None and running:
                await self._end(vm)
                self.store.vms.set_state(vm.id, VmState.SUSPENDED, pid=None)
                self._note(vm, "suspended (finished after a restart)", kind="suspended")
            else:
                self._note(vm, "its suspend was cut short when bungalowd stopped; it runs on")
        elif operation is Operation.WAKE:
            saved = self.suspender.saved_state(vm)
            pid = await self._woke(vm) if vm.state is VmState.STARTING and saved else None
            if pid is not None and saved is not None:
                vm = self.store.vms.set_state(
                    vm.id, VmState.RUNNING, pid=pid, started=self.vms.clock.now(),
                    error=None, cmdline=saved.cmdline,
                )  # fmt: skip
            if vm.state is VmState.RUNNING:
                if saved is not None:
                    await self.snapshots.keeper.discard(saved)
                self._note(vm, "running again from its suspended state (after a restart)")
            else:
                await self._end(vm)
                self._fail(
                    vm,
                    "its wake was cut short when bungalowd stopped; "
                    f"`bungalow start {vm.name}` carries on from its saved state",
                )
        elif operation is Operation.RESTORE:
            vm_dir = self.vms.vm_dir(vm)
            (vm_dir / STAGED).unlink(missing_ok=True)
            kept = vm_dir / KEPT
            if vm.state is VmState.RUNNING:
                kept.unlink(missing_ok=True)
                self._note(vm, "its restore was cut short when bungalowd stopped; it runs on")
            else:
                await self._end(vm)
                if kept.exists():
                    os.replace(kept, vm_dir / "disk.qcow2")
                self._fail(vm, "its restore was cut short when bungalowd stopped; its own disk "
                           "is back in place")  # fmt: skip
        self.store.vms.end(vm.id)

    async def _woke(self, vm: VmRecord) -> int | None:
        """The PID of the QEMU a wake started, if it runs the guest again and the agent
        answers; None otherwise."""
        run_dir = self.vms.run_dir(vm)
        qemus = [p for p in await asyncio.to_thread(processes.under, run_dir) if p.is_qemu]
        if len(qemus) != 1 or not await boot.answers(run_dir, agent=True):
            return None
        return qemus[0].pid

    async def _end(self, vm: VmRecord) -> None:
        run_dir = self.vms.run_dir(vm)
        for process in await asyncio.to_thread(processes.end_all, run_dir):
            what = "QEMU" if process.is_qemu else process.program
            self.store.events.add(
                vm.name, "process-ended", f"ended its {what} (pid {process.pid}): "
                f"its {vm.operation} was cut short",
            )  # fmt: skip

    def _fail(self, vm: VmRecord, reason: str) -> None:
        current = self.store.vms.get(vm.name)
        if can_transition(current.state, VmState.FAILED):
            self.store.vms.set_state(vm.id, VmState.FAILED, pid=None, error=reason)
        self.store.events.add(vm.name, "failed", reason)

    def _note(self, vm: VmRecord, message: str, *, kind: str = "recovered") -> None:
        self.store.events.add(vm.name, kind, message)
