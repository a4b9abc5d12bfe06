"""After a daemon (re)start: account for every VM row and every process an earlier daemon left.

The processes come from /proc (host/processes.py: every QEMU and shaper names
its pidfile, which lies in its VM's run directory), not from the rows, so a
QEMU the database does not know of is found too. For each VM:

- an operation that was under way when the daemon died (``operation`` in the
  row) is finished or rolled back: a VM being made is removed (its maker got
  no answer, and nothing half-made may stay), a removal or a stop is carried
  out, an interrupted start ends ``failed`` with its QEMU ended;
- a VM recorded running or paused whose QEMU lives is adopted: its monitor is
  connected, a migration a snapshot left under way is cancelled, and a VM that
  should run is continued; one whose QEMU is gone (or does not answer) is
  ``failed``;
- a VM that should have no QEMU has whatever runs for it ended.

Every process ended and every change made is an event saying why. Run
directories no row names (a VM made half-way, a sandbox template) are
emptied of processes and removed. Snapshot operations (snapshots/recovery.py)
are settled before this runs.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import defaultdict
from pathlib import Path

from bungalow.daemon.state.lifecycle import VmState, can_transition
from bungalow.daemon.state.records import Operation, VmRecord
from bungalow.daemon.vms import boot, netshaping
from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import BungalowError
from bungalow.host import processes
from bungalow.host.processes import HostProcess
from bungalow.qemu.argv import MachineSpec, kernel_cmdline

log = logging.getLogger(__name__)

EXITED = "QEMU exited while bungalowd was not running"


async def census(root: Path) -> dict[Path, list[HostProcess]]:
    """Every process whose pidfile lies under ``root``, by run directory."""
    found: dict[Path, list[HostProcess]] = defaultdict(list)
    for process in await asyncio.to_thread(processes.under, root):
        found[process.run_dir].append(process)
    return found


class Recovery:
    def __init__(self, vms: VmManager) -> None:
        self.vms = vms
        self.store = vms.store

    async def run(self) -> None:
        """Settle every VM row, then every run directory no row names."""
        found = await census(self.vms.data.vms)
        for vm in self.store.vms.list():
            procs = found.pop(self.vms.run_dir(vm), [])
            async with self.vms.locked(vm.name):
                try:
                    await self._settle(vm, procs)
                except BungalowError as exc:
                    log.warning("could not settle %s after the restart: %s", vm.name, exc.message)
                    await self._end(vm, procs, f"ended: it could not be adopted ({exc.message})")
                    self._fail(vm, f"bungalowd could not take it back: {exc.message}")
        await self._sweep(found)

    def _has_agent(self, vm: VmRecord) -> bool:
        """Whether the VM's guest runs the bungalow agent: its image says so. A running QEMU
        needs nothing of its image, so one this daemon cannot find (an image store moved
        or removed meanwhile) does not stop it being taken back: only an imported disk,
        booted with the pc profile, has no agent."""
        try:
            return self.vms.images.get(vm.image_id).kind == "linux"
        except BungalowError as exc:
            log.warning("taking %s back without its image: %s", vm.name, exc.message)
            return vm.profile != "pc"

    async def _settle(self, vm: VmRecord, procs: list[HostProcess]) -> None:
        operation = vm.operation
        if operation is Operation.CREATE:
            await self._end(vm, procs, "ended: the VM was being made when bungalowd stopped")
            await self.vms.discard(vm)
            self.store.events.add(vm.name, "removed", "removed: it was being made when "
                                  "bungalowd stopped, and a half-made VM is not kept")  # fmt: skip
            return
        if operation is Operation.REMOVE:
            await self.vms.discard(vm)
            self.store.events.add(vm.name, "removed", "removed (finished after a restart)")
            return
        if operation is Operation.STOP or vm.state is VmState.STOPPING:
            await self._end(vm, procs, "ended: it was stopping when bungalowd stopped")
            self.store.vms.set_state(vm.id, VmState.STOPPED, pid=None)
            self.store.vms.end(vm.id)
            self.store.events.add(vm.name, "stopped", "stopped (finished after a restart)")
            return
        if vm.state in (VmState.RUNNING, VmState.PAUSED):
            await self._adopt(vm, procs)  # a start that finished, or a snapshot's source
            return
        if operation is Operation.START or vm.state is VmState.STARTING:
            finished = await self._finish_start(vm, procs)
            if finished is not None:
                await self._adopt(finished[0], procs, started=finished[1])
                return
            await self._end(vm, procs, "ended: it was starting when bungalowd stopped")
            self._fail(vm, "its start was interrupted when bungalowd stopped; start it again")
            return
        if procs:
            await self._end(vm, procs, f"ended: a QEMU ran for the VM while it was {vm.state}")
        if vm.operation is not None:
            self.store.vms.end(vm.id)

    async def _finish_start(
        self, vm: VmRecord, procs: list[HostProcess]
    ) -> tuple[VmRecord, MachineSpec] | None:
        """A start that got as far as a running guest whose agent answers is finished: the
        VM is recorded running, with the command line its kernel booted with; the record
        and the machine it booted. None if not."""
        qemus = [p for p in procs if p.is_qemu]
        if vm.state is not VmState.STARTING or len(qemus) != 1:
            return None
        image = self.vms.images.get(vm.image_id)
        if not await boot.answers(qemus[0].run_dir, agent=image.kind == "linux"):
            return None
        accel = self.vms.accel_for(vm)
        nics = await asyncio.to_thread(self.vms.nics_of, vm)
        spec = await asyncio.to_thread(self.vms.boot_spec, vm, image, accel, nics)
        cmdline = kernel_cmdline(spec) if spec.kernel is not None else None
        finished = self.store.vms.set_state(
            vm.id, VmState.RUNNING, pid=qemus[0].pid, started=self.vms.clock.now(), error=None,
            cmdline=cmdline,
        )  # fmt: skip
        self.store.events.add(vm.name, "started", "started (its guest had come up before "
                              "bungalowd stopped; finished after the restart)")  # fmt: skip
        return finished, spec

    async def _adopt(
        self, vm: VmRecord, procs: list[HostProcess], *, started: MachineSpec | None = None
    ) -> None:
        """Take the VM's QEMU back; its guest's clock is set (it may have been held paused).
        For a start finished here (``started``: the machine it booted) the guest is also
        told what a start tells it (NICs, machine-id, SSH keys): the start cut short may
        not have."""
        qemus = [p for p in procs if p.is_qemu]
        mine = next((p for p in qemus if p.pid == vm.pid), qemus[0] if qemus else None)
        strays = [p for p in qemus if p is not mine]
        if strays:
            await self._end(vm, strays, "ended: a second QEMU ran for the VM")
        if mine is None:
            await self._end(vm, procs, "ended: its QEMU was gone")
            self._fail(vm, EXITED)
            return
        log.info("reattaching to %s (pid %s)", vm.name, mine.pid)
        runtime = await boot.adopt(
            mine.pid, mine.run_dir, running=vm.state is VmState.RUNNING,
            agent=self._has_agent(vm),
        )  # fmt: skip
        if vm.pid != mine.pid:
            log.info("%s runs as pid %s, recorded %s", vm.name, mine.pid, vm.pid)
        if runtime.agent is not None:
            try:
                await runtime.agent.sync(time=time.time())
                if started is not None:
                    nics = await asyncio.to_thread(self.vms.nics_of, vm)
                    await self.vms.prepare_guest(vm, runtime.agent, started, nics)
            except BungalowError as exc:
                log.warning("could not set up the guest of %s: %s", vm.name, exc.message)
        # A dead shaper is replaced first: the watch follows the shaper that runs.
        await netshaping.reattach(vm, mine.run_dir, self._event(vm.name))
        self.vms.watch_adopted(vm, runtime)
        try:
            await self.vms.apply_limits(vm, runtime)
        except BungalowError as exc:
            log.warning("could not apply the limits of %s: %s", vm.name, exc.message)
        if vm.operation is not None:
            self.store.vms.end(vm.id)
        self.store.events.add(vm.name, "adopted", f"its QEMU (pid {mine.pid}) outlived "
                              "bungalowd and was taken back")  # fmt: skip
        log.info("reattached to %s (pid %s)", vm.name, mine.pid)

    def _fail(self, vm: VmRecord, reason: str) -> None:
        current = self.store.vms.by_id(vm.id)
        if current is None:
            return
        if can_transition(current.state, VmState.FAILED):
            self.store.vms.set_state(vm.id, VmState.FAILED, pid=None, error=reason)
        self.store.vms.end(vm.id)
        self.store.events.add(vm.name, "failed", reason)

    async def _end(self, vm: VmRecord, procs: list[HostProcess], why: str) -> None:
        """End ``procs`` (and anything else of the VM) and say so in the event log."""
        for process in procs:
            await asyncio.to_thread(processes.end, process)
            self.store.events.add(vm.name, "process-ended", f"{why} ({_named(process)})")
        run_dir = self.vms.run_dir(vm)
        await asyncio.to_thread(processes.end_all, run_dir)
        await asyncio.to_thread(boot.clean_run_dir, run_dir)

    async def _sweep(self, found: dict[Path, list[HostProcess]]) -> None:
        """VM directories no row names are leftovers of a daemon killed mid-way (a half-made
        VM or sandbox template): end their processes and remove them."""
        for run_dir, procs in found.items():
            for process in procs:
                await asyncio.to_thread(processes.end, process)
                self.store.events.add(None, "process-ended", f"ended {_named(process)}: no VM "
                                      f"has its directory {run_dir.parent.name}")  # fmt: skip
        known = {vm.id for vm in self.store.vms.list()}
        root = self.vms.data.vms
        if not root.exists():
            return
        for directory in sorted(root.iterdir()):
            if directory.name in known:
                continue
            await asyncio.to_thread(processes.end_all, directory)
            await asyncio.to_thread(shutil.rmtree, directory, True)
            log.info("removed the leftover VM directory %s", directory.name)

    def _event(self, name: str) -> netshaping.Event:
        def event(kind: str, message: str) -> None:
            self.store.events.add(name, kind, message)

        return event


def _named(process: HostProcess) -> str:
    what = "QEMU" if process.is_qemu else process.program
    return f"{what}, pid {process.pid}"
