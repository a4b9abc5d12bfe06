"""The VM service: create, start, stop, remove, pause and resume VMs, and watch their QEMUs.

Every change to one VM runs under that VM's lock (locks.py). A change of state
goes through the store's guarded ``set_state`` (the transition table in
state/lifecycle.py), and an operation that takes more than one step records
itself in the row first (``Operation``), so a daemon killed at any instant
leaves a row the next one can finish or roll back (recovery.py). The runtimes
-- the QEMU, monitor and agent connections of the VMs that run -- are this
service's own; others read them through :meth:`VmManager.runtime`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import VmState, require_running, transition
from bungalow.daemon.state.records import Operation, VmRecord
from bungalow.daemon.state.store import Store
from bungalow.daemon.vms import (
    boot,
    diskfull,
    limits,
    media,
    netshaping,
    provisioning,
    readiness,
    timeline,
)
from bungalow.daemon.vms import firmware as firmware_files
from bungalow.daemon.vms.admission import Admission
from bungalow.daemon.vms.balloon import FloorChange, check_floor, floor_sentence
from bungalow.daemon.vms.host import HostFacts
from bungalow.daemon.vms.limits import Limits
from bungalow.daemon.vms.locks import VmLocks
from bungalow.daemon.vms.nics import AttachedNic, NetworkChoice, Networks, guest_nics, with_taps
from bungalow.daemon.vms.plan import check_ports_free, claimed_ports, plan_vm
from bungalow.daemon.vms.requests import CreateRequest
from bungalow.daemon.vms.runtime import VmRuntime
from bungalow.errors import AgentError, BungalowError, InvalidStateError, QemuError, UserError
from bungalow.guest.channel import AgentChannel
from bungalow.host import processes
from bungalow.images.store import Image, ImageStore
from bungalow.names import validate_name
from bungalow.paths import DataDir
from bungalow.qemu.argv import MachineSpec, kernel_cmdline
from bungalow.qemu.monitor import Monitor
from bungalow.qemu.process import pid_alive, terminate, wait_exit

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 30.0
#: Seconds between attempts at recording a VM held for a full disk, while the write fails.
HELD_RETRY = 5.0
#: Called once a VM is gone, with its last record (the snapshot keeper lets its snapshots go).
OnRemoved = Callable[[VmRecord], Awaitable[None]]
#: Brings a freshly inserted VM up: boots it, or starts it from a snapshot.
BringUp = Callable[[VmRecord], Awaitable[VmRecord]]


def message_of(exc: BaseException) -> str:
    """The sentence an exception stands for, for a VM's ``error`` and the event log."""
    return exc.message if isinstance(exc, BungalowError) else f"{type(exc).__name__}: {exc}"


class VmManager:
    def __init__(
        self,
        *,
        data: DataDir,
        store: Store,
        images: ImageStore,
        admission: Admission,
        host: HostFacts,
        clock: Clock,
        on_removed: OnRemoved | None = None,
        networks: Networks | None = None,
        balloon: bool = True,
    ) -> None:
        self.data = data
        self.store = store
        self.images = images
        self.admission = admission
        self.host = host
        self.clock = clock
        self._on_removed = on_removed
        #: The networks room (None: a daemon without private networks, not run as root).
        self.networks = networks
        #: Whether VMs booted from now on get a balloon (config.toml ``[memory] balloon``).
        self.balloon = balloon
        self._runtimes: dict[str, VmRuntime] = {}
        self._locks = VmLocks()
        #: Room for the daemon's own writes when a guest fills the disk (diskfull.py).
        self._reserve = diskfull.Reserve(data.root / "reserve")

    def locked(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the VM ``name``'s lock: every change to that VM happens inside."""
        return self._locks.hold(name)

    # -- queries -------------------------------------------------------------------------------

    def get(self, name: str) -> VmRecord:
        return self.store.vms.get(name)

    def list(self) -> builtins.list[VmRecord]:
        return self.store.vms.list()

    def vm_dir(self, vm: VmRecord) -> Path:
        return self.data.vm_dir(vm.id)

    def run_dir(self, vm: VmRecord) -> Path:
        return self.data.vm_dir(vm.id) / "run"

    def runtime(self, name: str) -> VmRuntime | None:
        """The QEMU of the VM ``name`` and the daemon's connections to it, while it runs."""
        return self._runtimes.get(name)

    @property
    def runtimes(self) -> Mapping[str, VmRuntime]:
        """Every VM with a QEMU this daemon watches, by name (read-only)."""
        return MappingProxyType(self._runtimes)

    def accel_for(self, vm: VmRecord) -> str:
        return self.host.accel(None if vm.accel == "auto" else vm.accel)

    def spec_for(
        self,
        vm: VmRecord,
        image: Image,
        accel: str,
        nics: Sequence[AttachedNic] | None = None,
    ) -> MachineSpec:
        """The machine a VM's QEMU runs as (blocks once per image for its initramfs, and
        reads the VM's NICs unless given ``nics``)."""
        if nics is None:
            nics = self.nics_of(vm)
        return boot.machine_spec(
            self.vm_dir(vm), vm, image, self.images, accel, nics, balloon=self.balloon
        )

    def nics_of(self, vm: VmRecord) -> Sequence[AttachedNic]:
        """The VM's NICs on private networks, in index order (blocking: a database read)."""
        if self.networks is None:
            return ()
        return sorted(self.networks.nics(vm.id), key=lambda nic: nic.index)

    def monitor(self, vm: VmRecord) -> Monitor:
        runtime = self._runtimes.get(vm.name)
        if runtime is None or runtime.monitor is None or not runtime.monitor.connected:
            raise InvalidStateError(
                f"bungalowd has no monitor connection to {vm.name} now; retry in a moment."
            )
        return runtime.monitor

    def ports_claimed(self, exclude: str | None = None) -> set[tuple[str, int, str]]:
        """Host ports that VMs of this daemon (but ``exclude``) forward."""
        return claimed_ports(vm for vm in self.store.vms.list() if vm.name != exclude)

    # -- create / start ------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> VmRecord:
        """Create the VM and boot it; on any failure nothing of it remains."""
        validate_name(request.name)
        with timeline.timing() as spent:
            async with self.locked(request.name), contextlib.AsyncExitStack() as stack:
                if request.iso is None:
                    image = self.images.get(request.image_ref)
                else:  # an installer VM: a blank disk and the ISO in its drive
                    media.check_installer(request)  # before an ISO file is imported
                    medium = media.imported(self.images, request.iso, self.store.vms.list)
                    image = await stack.enter_async_context(medium)
                vm = plan_vm(request, image)
                vm = await self.make(
                    vm, image, backing=None if media.has_drive(image) else image.disk,
                    bring_up=lambda made: self.boot(made, image),
                    event=f"created from {image.name}", networks=request.networks,
                )  # fmt: skip
            spent.mark("ready")
        log.info("%s booted: %s", vm.name, spent.describe())
        return vm

    async def make(
        self,
        vm: VmRecord,
        image: Image,
        *,
        backing: Path | None,
        bring_up: BringUp,
        event: str,
        networks: Sequence[NetworkChoice] = (),
    ) -> VmRecord:
        """Admit a planned VM, insert it, put it on ``networks``, make its disk on ``backing``
        and bring it up; all or nothing. The caller holds the VM's lock."""
        self.admission.check(vm, creating=True)
        check_ports_free(vm.ports, self.ports_claimed())
        if networks and self.networks is None:
            raise UserError(
                "Private networks need bungalowd to run as root; launch without --network "
                "(the VM then has user-mode networking)."
            )
        vm = self.store.vms.insert(vm.with_changes(operation=Operation.CREATE))
        timeline.mark("api")
        try:
            await self._attach(vm, networks)
            await asyncio.to_thread(boot.create_disk, self.vm_dir(vm), backing, vm.disk_size)
            await asyncio.to_thread(
                firmware_files.provide, self.vm_dir(vm), vm, backing and backing.parent
            )
            await asyncio.to_thread(provisioning.make_seed, self.vm_dir(vm), vm, image)
            timeline.mark("disk")
            vm = await bring_up(vm)
        except BaseException:
            await self.discard(vm)
            raise
        self.store.vms.end(vm.id)
        self.store.events.add(vm.name, "created", event)
        return self.get(vm.name)

    async def _attach(self, vm: VmRecord, networks: Sequence[NetworkChoice]) -> None:
        """Give the VM a NIC on each of ``networks`` (the first keeps the VM's own MAC) and
        publish its ports on the first one's address (the network's DNAT rules)."""
        if not networks or self.networks is None:
            return
        for position, choice in enumerate(networks):
            mac = vm.mac if position == 0 else None
            address = None if choice.address is None else str(choice.address)
            await self.networks.attach(vm.id, vm.name, choice.network, address, mac)
        timeline.mark("nics")

    async def start(self, name: str) -> VmRecord:
        """Boot a stopped, created or failed VM (a suspended one is woken by snapshots)."""
        async with self.locked(name):
            vm = self.get(name)
            transition(name, vm.state, VmState.STARTING)
            self.admission.check(vm, creating=False)
            image = self.images.get(vm.image_id)
            check_ports_free(vm.ports, self.ports_claimed(exclude=vm.name))
            vm = self.store.vms.begin(vm.id, Operation.START)
            try:
                vm = await self.boot(vm, image)
            except BaseException as exc:
                self._fail_start(vm.id, exc)
                raise
            finally:
                self.store.vms.end(vm.id)
            self.store.events.add(name, "started", "started")
            return vm

    def _fail_start(self, vm_id: str, exc: BaseException) -> None:
        """A start that got as far as ``starting`` ends ``failed``, saying why."""
        current = self.store.vms.by_id(vm_id)
        if current is not None and current.state is VmState.STARTING:
            self.store.vms.set_state(vm_id, VmState.FAILED, pid=None, error=message_of(exc))

    async def boot(self, vm: VmRecord, image: Image) -> VmRecord:
        """Boot a VM whose record and disk exist (its lock held): starting, then running."""
        accel = self.accel_for(vm)
        # The room kept for the daemon's own writes when a guest fills the disk (diskfull.py),
        # taken back here too: a VM held once may have been stopped rather than resumed.
        await asyncio.to_thread(self._reserve.keep)
        vm = self.store.vms.set_state(vm.id, VmState.STARTING, error=None)
        nics = await asyncio.to_thread(self.nics_of, vm)
        spec = await asyncio.to_thread(self.boot_spec, vm, image, accel, nics)
        timeline.mark("spec")
        async with with_taps(spec, vm.id, nics) as tapped:
            runtime = await boot.boot_until_ready(tapped, image, netshaping.net_bw(vm))
        try:
            if runtime.agent:
                await self.prepare_guest(vm, runtime.agent, spec, nics)
            await self.apply_limits(vm, runtime)
            timeline.mark("limits")
        except BaseException:
            await boot.kill(runtime)
            raise
        cmdline = kernel_cmdline(spec) if spec.kernel is not None else None
        return self.adopt(vm, runtime, cmdline=cmdline)

    def boot_spec(
        self, vm: VmRecord, image: Image, accel: str, nics: Sequence[AttachedNic]
    ) -> MachineSpec:
        """The machine a start boots (blocking: reads files). systemd takes the machine-id
        from the command line over /etc/machine-id, so a server guest boots with its own
        command line, never one a clone's source booted with."""
        booted = vm.with_changes(cmdline=None) if image.flavour == "server" else vm
        return self.spec_for(booted, image, accel, nics)

    async def prepare_guest(
        self, vm: VmRecord, agent: AgentChannel, spec: MachineSpec, nics: Sequence[AttachedNic]
    ) -> None:
        """What a guest that booted from ``spec`` is told before its start counts as done:
        its NICs' addresses and its machine-id where the kernel command line could not say
        them, and its SSH keys (installed on every start). Raises what the agent raises."""
        if not boot.boot_sets_network(spec):
            await agent.sync(nics=guest_nics(nics))
        if vm.machine_id and not boot.boot_sets_machine_id(spec, vm.machine_id):
            await agent.sync(machine_id=vm.machine_id)
        await provisioning.install_keys(agent, vm)

    def adopt(self, vm: VmRecord, runtime: VmRuntime, *, cmdline: str | None) -> VmRecord:
        """Make a freshly started QEMU the VM's: record it running and watch it."""
        vm = self.store.vms.set_state(
            vm.id, VmState.RUNNING, pid=runtime.pid, started=self.clock.now(), error=None,
            cmdline=cmdline,
        )  # fmt: skip
        self._watch_runtime(vm.name, runtime)
        return vm

    def _watch_runtime(self, name: str, runtime: VmRuntime) -> None:
        self._runtimes[name] = runtime
        # A fresh context: a guest powering off later is not the act of whoever started it.
        watch = self._watch(name, runtime)
        runtime.watcher = asyncio.create_task(watch, context=contextvars.Context())
        netshaping.supervise(name, runtime, self.store)

    async def apply_limits(self, vm: VmRecord, runtime: VmRuntime) -> None:
        """Give the VM's QEMU its promised share: control group, disk throttling, network."""
        await self._apply(vm.id, runtime, Limits.from_json(vm.limits))

    async def _apply(self, vm_id: str, runtime: VmRuntime, new: Limits) -> None:
        await limits.apply(vm_id, runtime.pid, runtime.monitor, new)
        await asyncio.to_thread(netshaping.apply, runtime.run_dir, new.net_bw)

    async def hold_to(self, name: str, effective: Limits) -> bool:
        """Give the running VM ``name``'s QEMU ``effective`` limits now without recording them
        (the noisy-neighbour policy tightening its own); False when it has no QEMU."""
        vm = self.store.vms.find(name)
        runtime = self._runtimes.get(name)
        if vm is None or runtime is None:
            return False
        await limits.apply(vm.id, runtime.pid, runtime.monitor, effective)
        return True

    def pending_limits(self, vm: VmRecord) -> builtins.list[str]:
        """Limits recorded that apply only from the VM's next start."""
        return netshaping.pending(vm, self.run_dir(vm))

    async def set_limits(
        self, name: str, changes: dict[str, Any], floor: FloorChange | None = None
    ) -> VmRecord:
        """Change limits (and the balloon ``floor``); a running VM's QEMU gets them at once
        (a new network limit only if it was started with one, see netshaping.py; the floor
        when the host next weighs its memory, policies/pressure.py)."""
        async with self.locked(name):
            vm = self.get(name)
            new = Limits.from_json(vm.limits).changed(changes)
            limits.check_memory_limit(new, vm.memory, name)
            if floor is not None:
                memory_min = check_floor(floor.floor, vm.memory, name)
            if any(value is not None for value in changes.values()) or floor is None:
                runtime = self._runtimes.get(name)
                if runtime is not None and vm.state in (VmState.RUNNING, VmState.PAUSED):
                    await self._apply(vm.id, runtime, new)
                vm = self.store.vms.set_limits(vm.id, new.to_json())
                shown = ", ".join(f"{k}={v}" for k, v in sorted(new.to_json().items()))
                self.store.events.add(name, "limits", f"limits set: {shown}")
            if floor is not None and memory_min != vm.memory_min:  # a repeat records nothing
                vm = self.store.vms.set_memory_min(vm.id, memory_min)
                self.store.events.add(name, "memory-min", floor_sentence(memory_min))
            return vm

    async def add_ssh_keys(self, name: str, keys: builtins.list[str]) -> VmRecord:
        """Record more SSH keys for root and, while the VM runs, install them now.

        UserError for a key that is not one (nothing recorded then); the keys are recorded
        only once the guest has them, so a VM that runs never lists a key it lacks.
        """
        async with self.locked(name):
            vm = self.get(name)
            wanted = provisioning.checked_keys([*vm.ssh_keys, *keys])
            if vm.state is VmState.RUNNING:
                channel = await self.agent_unlocked(vm, "install SSH keys")
                await provisioning.install_keys(channel, vm, wanted)
            if wanted != vm.ssh_keys:
                vm = self.store.vms.set_ssh_keys(vm.id, wanted)
                self.store.events.add(name, "ssh-keys", f"{len(wanted)} SSH keys for root")
            return vm

    # -- pause / resume ------------------------------------------------------------------------

    async def pause(self, name: str) -> VmRecord:
        """Freeze the vCPUs; memory, devices and connections stay as they are."""
        async with self.locked(name):
            vm = self.get(name)
            transition(name, vm.state, VmState.PAUSED)
            await self.monitor(vm).stop()
            vm = self.store.vms.set_state(vm.id, VmState.PAUSED, error=None)
            self.store.events.add(name, "paused", "paused")
            return vm

    async def resume(self, name: str) -> VmRecord:
        """Let the vCPUs run again and bring the guest's clock up to date.

        A VM QEMU holds because the host's disk filled up (diskfull.py) is continued
        only when there is room again: InvalidStateError with a sentence otherwise.
        """
        async with self.locked(name):
            vm = self.get(name)
            transition(name, vm.state, VmState.RUNNING)
            monitor = self.monitor(vm)
            runtime = self._runtimes.get(name)
            held = await monitor.status() == "io-error"
            if held:
                await asyncio.to_thread(diskfull.check_room, name, self.data.root)
            if runtime is not None:
                runtime.io_error = None  # a write that fails again stops it again, and says so
            await monitor.cont()
            vm = self.store.vms.set_state(vm.id, VmState.RUNNING, error=None)
            if held:  # room again: the daemon's reserve is set aside for the next time
                await asyncio.to_thread(self._reserve.keep)
            if runtime is not None:
                with contextlib.suppress(BungalowError, TimeoutError):
                    await self.agent_unlocked(vm, "set the clock")
                    # Bounded: a guest stopped again at once (its disk still full) cannot answer.
                    await asyncio.wait_for(boot.sync_guest(runtime, vm, identity=False), 10)
            self.store.events.add(name, "resumed", "resumed")
            return vm

    async def resume_held(self) -> builtins.list[str]:
        """Continue every VM QEMU holds paused because the host's disk was full, once there
        is room again, and take the daemon's disk reserve back (the reaper's look); the
        names of the VMs resumed."""
        if not await asyncio.to_thread(diskfull.has_room, self.data.root):
            return []
        resumed: builtins.list[str] = []
        for name, runtime in builtins.list(self._runtimes.items()):
            vm = self.store.vms.find(name)
            if vm is None or vm.state is not VmState.PAUSED:
                continue
            if runtime.io_error != diskfull.NOSPACE:
                continue  # paused by a user, or a failing disk: for a person to look at
            try:
                await self.resume(name)
            except BungalowError as exc:
                log.warning("could not resume %s now there is room: %s", name, exc.message)
                continue
            resumed.append(name)
        await asyncio.to_thread(self._reserve.keep)
        return resumed

    # -- stop / remove -------------------------------------------------------------------------

    async def stop(self, name: str, timeout: float = DEFAULT_STOP_TIMEOUT) -> VmRecord:
        """Ask the guest to power off, force its QEMU down after ``timeout`` seconds."""
        async with self.locked(name):
            vm = self.get(name)
            transition(name, vm.state, VmState.STOPPING)
            vm = self.store.vms.set_state(vm.id, VmState.STOPPING, operation=Operation.STOP)
            forced = await self._shutdown(vm, timeout)
            # A pause's reason (a full host disk) ends with the QEMU that held it.
            self.store.vms.set_state(vm.id, VmState.STOPPED, pid=None, operation=None, error=None)
            said = f"forced off: the guest did not power off within {timeout:g} s"
            self.store.events.add(name, "stopped", said if forced and timeout > 0 else "stopped")
            return self.get(name)

    async def remove(self, name: str, only_if: Callable[[VmRecord], bool] | None = None) -> bool:
        """End every process of the VM, then remove its files and its row.

        With ``only_if``, only a VM for which it holds once the VM's lock is taken (a
        policy's condition, which may have changed while it waited); whether it was removed.
        """
        async with self.locked(name):
            vm = self.get(name)
            if only_if is not None and not only_if(vm):
                return False
            vm = self.store.vms.begin(vm.id, Operation.REMOVE)
            await self.discard(vm)
            self.store.events.add(name, "removed", "removed")
            return True

    async def end_qemu(self, vm: VmRecord) -> None:
        """End the VM's QEMU at once (its state is about to be replaced); lock held."""
        await self._shutdown(vm, timeout=0)

    async def _shutdown(self, vm: VmRecord, timeout: float) -> bool:
        """End the VM's QEMU, asking its guest to power off first for up to ``timeout`` s;
        whether it had to be forced off."""
        runtime = self._runtimes.get(vm.name)
        forced = False
        if runtime is not None:
            runtime.expected_exit = True
            if vm.state is VmState.PAUSED and runtime.monitor is not None:
                with contextlib.suppress(BungalowError):
                    await runtime.monitor.cont()  # a paused guest cannot power itself off
            if timeout > 0:
                await boot.graceful_poweroff(runtime, timeout)
            if not runtime.exited.is_set() and pid_alive(runtime.pid, runtime.run_dir):
                forced = True
                await asyncio.to_thread(terminate, runtime.pid, runtime.run_dir, 5.0)
            await self._forget_runtime(vm.name)
        await self._end_processes(vm)
        return forced

    async def _end_processes(self, vm: VmRecord) -> None:
        """End whatever still runs for the VM (its QEMU, its shaper), found from /proc, and
        clear its run directory and control group."""
        run_dir = self.run_dir(vm)
        await asyncio.to_thread(processes.end_all, run_dir)
        await asyncio.to_thread(boot.clean_run_dir, run_dir)
        await asyncio.to_thread(limits.release, vm.id)

    async def _forget_runtime(self, name: str) -> None:
        runtime = self._runtimes.pop(name, None)
        if runtime is None:
            return
        if runtime.watcher is not None and runtime.watcher is not asyncio.current_task():
            runtime.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runtime.watcher
        await runtime.close_channels()

    async def discard(self, vm: VmRecord) -> None:
        """Remove every trace of a VM (lock held): processes, files, database row.

        Returns only once no process of the VM runs.
        """
        runtime = self._runtimes.get(vm.name)
        if runtime is not None:
            runtime.expected_exit = True
            await self._forget_runtime(vm.name)
        await self._end_processes(vm)
        await asyncio.to_thread(shutil.rmtree, self.vm_dir(vm), True)
        if self.networks is not None:  # its QEMU gone, its TAPs went with it
            await self.networks.detach_all(vm.id)
        self.store.vms.delete(vm.id)
        if self._on_removed is not None:
            await self._on_removed(vm)

    # -- supervision ---------------------------------------------------------------------------

    async def _watch(self, name: str, runtime: VmRuntime) -> None:
        """Notice QEMU holding the guest after a disk error (record it paused, saying why)
        and QEMU exiting on its own (record why); both for as long as the QEMU lives."""
        exited = asyncio.create_task(wait_exit(runtime.pid))
        try:
            while True:
                held = asyncio.create_task(runtime.io_stopped.wait())
                try:
                    await asyncio.wait({exited, held}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    held.cancel()
                if exited.done():
                    break
                runtime.io_stopped.clear()
                self._interrupt_held(name, runtime)
                await self._record_held(name, runtime)
        finally:
            exited.cancel()
        exit_code = exited.result()
        runtime.exited.set()
        if runtime.expected_exit:
            return
        async with self.locked(name):
            vm = self.store.vms.find(name)
            if vm is None or self._runtimes.get(name) is not runtime:
                return
            powered_off = boot.guest_powered_off(runtime, exit_code)
            state = VmState.STOPPED if powered_off else VmState.FAILED
            error = None
            if not powered_off:
                error = (
                    await asyncio.to_thread(
                        limits.oom_killed, vm.id, name, Limits.from_json(vm.limits)
                    )
                    or boot.shutdown_cause(runtime)
                    or await asyncio.to_thread(boot.exit_reason, runtime.run_dir)
                )
            self._runtimes.pop(name, None)
            await runtime.close_channels()
            await self._end_processes(vm)
            self.store.vms.set_state(vm.id, state, pid=None, error=error)
            self.store.events.add(name, str(state), error or "the guest powered off")

    def _interrupt_held(self, name: str, runtime: VmRuntime) -> None:
        """End the commands and file copies under way in a VM QEMU just held, with the
        reason: their callers would otherwise wait, unanswered, for as long as it is held."""
        if runtime.agent is None or runtime.io_error is None:
            return
        why = diskfull.held_reason(name, runtime.io_error, self.data.root)
        ended = f"The VM {name} was paused before this finished, so it was ended: {why}."
        runtime.agent.interrupt(InvalidStateError(ended))

    async def _record_held(self, name: str, runtime: VmRuntime) -> None:
        """QEMU stopped the guest after a disk write failed: record the VM ``paused`` with
        the reason, and an event. A database on the same full disk may refuse the write;
        it is tried again until it lands or the VM is continued meanwhile."""
        while True:
            async with self.locked(name):
                vm = self.store.vms.find(name)
                monitor = runtime.monitor
                if vm is None or self._runtimes.get(name) is not runtime or monitor is None:
                    return
                try:
                    if runtime.io_error is None or await monitor.status() != "io-error":
                        return  # continued meanwhile (resume), or an event from before it
                    reason = diskfull.held_reason(name, runtime.io_error, self.data.root)
                    if runtime.io_error == diskfull.NOSPACE and await asyncio.to_thread(
                        self._reserve.release
                    ):
                        log.warning("the disk of %s is full: released the daemon's reserve "
                                    "to record it", self.data.root)  # fmt: skip
                    if vm.state is VmState.RUNNING:
                        self.store.vms.set_state(vm.id, VmState.PAUSED, error=reason)
                        self.store.events.add(
                            name,
                            "paused",
                            reason,
                            reason="host disk full" if runtime.io_error == diskfull.NOSPACE else "",
                        )
                    return
                except QemuError:
                    return  # QEMU is going: the exit is recorded instead
                except Exception as exc:  # the database's disk is full too, most likely
                    log.warning("could not record that %s is paused (%s); trying again", name, exc)
            await asyncio.sleep(HELD_RETRY)

    def watch_adopted(self, vm: VmRecord, runtime: VmRuntime) -> None:
        """Watch the QEMU of a running VM an earlier daemon started (recovery.py)."""
        self._watch_runtime(vm.name, runtime)

    async def close(self) -> None:
        """Let go of every VM without stopping it: they outlive the daemon."""
        for name in builtins.list(self._runtimes):
            runtime = self._runtimes.pop(name)
            if runtime.watcher is not None:
                runtime.watcher.cancel()
            await runtime.close_channels()

    # -- guest access --------------------------------------------------------------------------

    async def agent(self, name: str, action: str) -> AgentChannel:
        """The agent of the running VM ``name``, for ``action`` (a use that counts as activity).

        InvalidStateError with a sentence unless it runs; AgentError when the agent is gone.
        """
        vm = self.get(name)
        runtime = self._runtimes.get(name)
        if vm.state is VmState.RUNNING and runtime is not None and runtime.io_error is not None:
            # QEMU holds the guest already; its watcher is about to record it paused.
            why = diskfull.held_reason(name, runtime.io_error, self.data.root)
            require_running(name, VmState.PAUSED, action, why)
        require_running(name, vm.state, action, vm.error)
        channel = await self.agent_unlocked(vm, action)
        self.store.vms.touch_active(name, self.clock.now())
        return channel

    async def wait_services(self, name: str, timeout: float) -> AsyncIterator[dict[str, Any]]:
        """The events of waiting for VM ``name``'s services (vms/readiness.py), once it is
        checked to be running with an agent; the waiting happens as they are read."""
        vm = self.get(name)
        action = "wait for its services"
        require_running(name, vm.state, action, vm.error)
        image = self.images.get(vm.image_id)
        await self.agent_unlocked(vm, action)  # refuses an imported disk with a sentence
        return readiness.wait_services(
            name,
            lambda: self.agent(name, action),
            systemd=image.flavour == "server",
            timeout=timeout,
        )

    async def agent_unlocked(self, vm: VmRecord, action: str) -> AgentChannel:
        """The VM's agent channel, reconnected if it dropped."""
        name = vm.name
        if vm.profile == "pc" and self.images.get(vm.image_id).kind != "linux":
            raise AgentError(
                f"Cannot {action}: the VM {name} has no bungalow agent (it boots an imported "
                f"disk or an installer ISO); use `bungalow console {name}` (its serial "
                f"console), or `bungalow screenshot {name}` and `bungalow vnc {name}` (its "
                "screen) instead."
            )
        runtime = self._runtimes.get(name)
        if runtime is None:
            raise InvalidStateError(f"Cannot {action}: the VM {name} is not attached; retry.")
        if runtime.agent is None or runtime.agent.closed:
            try:
                runtime.agent = await AgentChannel.connect(
                    runtime.run_dir / "agent.sock", timeout=10
                )
            except AgentError as exc:
                raise AgentError(
                    f"The agent in VM {name} does not answer ({exc.message}); "
                    f"see `bungalow logs {name}` or restart it."
                ) from None
        return runtime.agent
