"""The daemon's authority over VMs: create, start, stop, remove, reattach.

Every lifecycle change of one VM runs under that VM's lock, goes through the
state machine in :mod:`bungalow.daemon.state.lifecycle`, and is written to the store
before the daemon acts on it, so a daemon killed at any point restarts into a
state it can explain.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import dataclasses
import logging
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bungalow.daemon.accounting.ledger import UsageLedger
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import ACTIVE_STATES, VmState, require_running, transition
from bungalow.daemon.state.store import Store, VmRecord
from bungalow.daemon.vms import boot, limits, netshaping
from bungalow.daemon.vms.limits import Limits
from bungalow.daemon.vms.requests import CreateRequest
from bungalow.daemon.vms.runtime import VmRuntime
from bungalow.errors import AgentError, BungalowError, InvalidStateError
from bungalow.guest.channel import AgentChannel
from bungalow.host.allocation import Allocation, Ratios, Shape
from bungalow.host.resources import HostCapacity, check_fits, read_capacity
from bungalow.images.store import Image, ImageStore
from bungalow.names import validate_name
from bungalow.paths import DataDir
from bungalow.qemu.accel import probe_accelerator
from bungalow.qemu.argv import MachineSpec, kernel_cmdline, random_mac
from bungalow.qemu.monitor import Monitor
from bungalow.qemu.process import pid_alive, read_pid, terminate, wait_exit

log = logging.getLogger(__name__)


async def kill_leftover(run_dir: Path) -> None:
    """End the QEMU whose pidfile is in ``run_dir``, if it is still that QEMU."""
    pid = read_pid(run_dir)
    if pid is not None and pid_alive(pid, run_dir):
        await asyncio.to_thread(terminate, pid, run_dir, 5.0)
    await asyncio.to_thread(netshaping.stop, run_dir)


DEFAULT_STOP_TIMEOUT = 30.0


@dataclass
class VmManager:
    data: DataDir
    store: Store
    images: ImageStore
    runtimes: dict[str, VmRuntime] = field(default_factory=dict)
    ratios: Ratios = field(default_factory=Ratios)
    #: Refuses a VM its project's quota has no room for (projects.py); set by the daemon.
    quota_check: Callable[[VmRecord, bool], None] | None = None
    #: Called after a VM is gone, so its snapshots can go too (see snapshots.py).
    on_removed: Callable[[VmRecord], Awaitable[None]] | None = None
    #: What VMs have held and cost (usage.py); set by the daemon.
    usage: UsageLedger | None = None
    #: Starts a suspended VM from its saved state (suspend.py); set by the daemon.
    wake: Callable[[str], Awaitable[VmRecord]] | None = None
    clock: Clock = field(default_factory=Clock)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # -- queries -------------------------------------------------------------------------------

    def get(self, name: str) -> VmRecord:
        return self.store.get(name)

    def list(self) -> list[VmRecord]:
        return self.store.list()

    def vm_dir(self, vm: VmRecord) -> Path:
        return self.data.vm_dir(vm.id)

    def capacity(self) -> HostCapacity:
        return read_capacity(self.data.root)

    def allocation(self, exclude: str | None = None) -> Allocation:
        """What the host has promised: vCPUs and memory of VMs with a QEMU, disks of all."""
        capacity = self.capacity()
        allocated = Shape()
        for vm in self.store.list():
            if vm.name == exclude:
                continue
            active = vm.state in ACTIVE_STATES
            allocated += Shape(vm.cpus if active else 0, vm.memory if active else 0, vm.disk_size)
        total = Shape(capacity.cpus, capacity.memory_bytes, capacity.disk_total)
        return Allocation(total=total, ratios=self.ratios, allocated=allocated)

    def admit(self, vm: VmRecord, *, starting: bool) -> None:
        """Refuse a VM the host's allocation ratios leave no room for (disk only if it exists)."""
        if self.quota_check is not None:
            self.quota_check(vm, starting)
        asked = Shape(vm.cpus, vm.memory, 0 if starting else vm.disk_size)
        self.allocation(exclude=vm.name).admit(asked, f"the VM {vm.name}")

    # -- create / start ------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> VmRecord:
        """Create the VM and boot it; on any failure nothing of it remains."""
        validate_name(request.name)
        async with self.lock(request.name):
            image = self.images.get(request.image)
            vm = boot.plan_vm(request, image, self.capacity(), self._ports_in_use())
            self.admit(vm, starting=False)
            vm = vm.with_changes(
                id=secrets.token_hex(6), mac=random_mac(), machine_id=secrets.token_hex(16)
            )
            self.store.insert(vm)
            vm_dir = self.vm_dir(vm)
            try:
                await asyncio.to_thread(boot.create_disk, vm_dir, image, vm.disk_size)
                vm = await self._boot(vm, image)
            except BaseException:
                await self._discard(vm)
                raise
            self.store.add_event(vm.name, "created", f"created from {image.name}")
            return vm

    async def start(self, name: str) -> VmRecord:
        if self.wake is not None and self.store.get(name).state is VmState.SUSPENDED:
            return await self.wake(name)
        async with self.lock(name):
            vm = self.store.get(name)
            transition(name, vm.state, VmState.STARTING)
            self.admit(vm, starting=True)
            image = self.images.get(vm.image_id)
            boot.check_ports_free(vm.ports, self._ports_in_use(exclude=vm.name))
            try:
                vm = await self._boot(vm, image)
            except BaseException as exc:
                message = exc.message if isinstance(exc, BungalowError) else str(exc)
                self.store.update(
                    self.store.get(name).with_changes(state=VmState.FAILED, pid=None, error=message)
                )
                raise
            self.store.add_event(name, "started", "started")
            return vm

    async def _boot(self, vm: VmRecord, image: Image) -> VmRecord:
        accel = self.accel_for(vm)
        vm = vm.with_changes(state=VmState.STARTING, error=None)
        self.store.update(vm)
        runtime = await boot.boot_until_ready(self.vm_dir(vm), vm, image, self.images, accel)
        try:
            if runtime.agent is not None and vm.machine_id:
                await runtime.agent.sync(machine_id=vm.machine_id)
        except BaseException:
            await boot.kill(runtime)
            raise
        spec = self.spec_for(vm, image, accel)
        cmdline = kernel_cmdline(spec) if spec.kernel is not None else None
        try:
            await self.apply_limits(vm, runtime)
        except BaseException:
            await boot.kill(runtime)
            raise
        return self.adopt_runtime(vm.with_changes(cmdline=cmdline), runtime)

    async def boot_record(self, vm: VmRecord, image: Image) -> VmRecord:
        """Boot a VM whose record and disk exist (the caller holds its lock)."""
        return await self._boot(vm, image)

    def check_fits(self, vm: VmRecord) -> None:
        """Refuse a VM the host has no room for (CapacityError naming the resource)."""
        check_fits(vm.cpus, vm.memory, vm.disk_size, self.capacity())
        self.admit(vm, starting=False)

    async def shutdown_now(self, vm: VmRecord) -> None:
        """End the VM's QEMU at once (its state is about to be replaced); caller holds the lock."""
        await self._shutdown(vm, timeout=0)

    async def discard(self, vm: VmRecord) -> None:
        await self._discard(vm)

    async def apply_limits(self, vm: VmRecord, runtime: VmRuntime) -> None:
        """Give the VM's QEMU its promised share: control group, disk throttling, network."""
        await self._apply(vm.id, runtime, Limits.from_json(vm.limits))

    async def _apply(self, vm_id: str, runtime: VmRuntime, new: Limits) -> None:
        await limits.apply(vm_id, runtime.pid, runtime.monitor, new)
        await asyncio.to_thread(netshaping.apply, runtime.run_dir, new.net_bw)

    def pending_limits(self, vm: VmRecord) -> builtins.list[str]:
        """Limits recorded that apply only from the VM's next start."""
        return netshaping.pending(vm, self.vm_dir(vm) / "run")

    async def set_limits(self, name: str, changes: dict[str, Any]) -> VmRecord:
        """Change limits; a running VM's QEMU gets them at once (a new network limit
        only if it was started with one, see netshaping.py)."""
        async with self.lock(name):
            vm = self.store.get(name)
            new = Limits.from_json(vm.limits).changed(changes)
            runtime = self.runtimes.get(name)
            if runtime is not None and vm.state in (VmState.RUNNING, VmState.PAUSED):
                await self._apply(vm.id, runtime, new)
            vm = vm.with_changes(limits=new.to_json())
            self.store.update(vm)
            shown = ", ".join(f"{k}={v}" for k, v in sorted(new.to_json().items()))
            self.store.add_event(name, "limits", f"limits set: {shown}")
            return vm

    def adopt_runtime(self, vm: VmRecord, runtime: VmRuntime) -> VmRecord:
        """Make a freshly started QEMU the VM's: record it running and watch it."""
        self.runtimes[vm.name] = runtime
        vm = vm.with_changes(
            state=VmState.RUNNING, pid=runtime.pid, started=self.clock.now(), error=None
        )
        self.store.update(vm)
        # A fresh context: a guest powering off later is not the act of whoever started it.
        watch = self._watch(vm.name, runtime)
        runtime.watcher = asyncio.create_task(watch, context=contextvars.Context())
        netshaping.supervise(vm.name, runtime, self.store)
        return vm

    def accel_for(self, vm: VmRecord) -> str:
        return probe_accelerator(None if vm.accel == "auto" else vm.accel).name

    def spec_for(self, vm: VmRecord, image: Image, accel: str) -> MachineSpec:
        """The machine a VM's QEMU runs as (the command line its guest booted with kept)."""
        spec = boot.machine_spec(self.vm_dir(vm), vm, image, self.images, accel)
        return spec if vm.cmdline is None else dataclasses.replace(spec, cmdline=vm.cmdline)

    # -- pause / resume ------------------------------------------------------------------------

    async def pause(self, name: str) -> VmRecord:
        """Freeze the vCPUs; memory, devices and connections stay as they are."""
        async with self.lock(name):
            vm = self.store.get(name)
            transition(name, vm.state, VmState.PAUSED)
            await self.monitor(vm).stop()
            vm = vm.with_changes(state=VmState.PAUSED)
            self.store.update(vm)
            self.store.add_event(name, "paused", "paused")
            return vm

    async def resume(self, name: str) -> VmRecord:
        """Let the vCPUs run again and bring the guest's clock up to date."""
        if self.wake is not None and self.store.get(name).state is VmState.SUSPENDED:
            return await self.wake(name)
        async with self.lock(name):
            vm = self.store.get(name)
            transition(name, vm.state, VmState.RUNNING)
            await self.monitor(vm).cont()
            vm = vm.with_changes(state=VmState.RUNNING)
            self.store.update(vm)
            runtime = self.runtimes.get(name)
            if runtime is not None:
                with contextlib.suppress(BungalowError):
                    await self.agent_unlocked(vm, "set the clock")
                    await boot.sync_guest(runtime, vm, identity=False)
            self.store.add_event(name, "resumed", "resumed")
            return vm

    def monitor(self, vm: VmRecord) -> Monitor:
        runtime = self.runtimes.get(vm.name)
        if runtime is None or runtime.monitor is None or not runtime.monitor.connected:
            raise InvalidStateError(
                f"bungalowd has no monitor connection to {vm.name} now; retry in a moment."
            )
        return runtime.monitor

    # -- stop / remove -------------------------------------------------------------------------

    async def stop(self, name: str, timeout: float = DEFAULT_STOP_TIMEOUT) -> VmRecord:
        async with self.lock(name):
            vm = self.store.get(name)
            transition(name, vm.state, VmState.STOPPING)
            self.store.update(vm.with_changes(state=VmState.STOPPING))
            await self._shutdown(vm, timeout)
            vm = self.store.get(name).with_changes(state=VmState.STOPPED, pid=None)
            self.store.update(vm)
            self.store.add_event(name, "stopped", "stopped")
            return vm

    async def remove(self, name: str) -> None:
        async with self.lock(name):
            vm = self.store.get(name)
            if vm.state in ACTIVE_STATES:
                await self._shutdown(vm, timeout=0)
            await self._discard(vm)
            self.store.add_event(name, "removed", "removed")
        self._locks.pop(name, None)

    async def _shutdown(self, vm: VmRecord, timeout: float) -> None:
        """Ask the guest to power off, wait ``timeout`` seconds, then force QEMU down."""
        runtime = self.runtimes.get(vm.name)
        run_dir = self.vm_dir(vm) / "run"
        if runtime is None:
            if vm.pid is not None and pid_alive(vm.pid, run_dir):
                await asyncio.to_thread(terminate, vm.pid, run_dir, 5.0)
            boot.clean_run_dir(run_dir)
            return
        runtime.expected_exit = True
        if vm.state is VmState.PAUSED and runtime.monitor is not None:
            with contextlib.suppress(BungalowError):
                await runtime.monitor.cont()  # a paused guest cannot power itself off
        if timeout > 0:
            await boot.graceful_poweroff(runtime, timeout)
        if not runtime.exited.is_set() and pid_alive(runtime.pid, run_dir):
            await asyncio.to_thread(terminate, runtime.pid, run_dir, 5.0)
        await self._forget_runtime(vm.name)
        boot.clean_run_dir(run_dir)
        limits.release(vm.id)

    async def _forget_runtime(self, name: str) -> None:
        runtime = self.runtimes.pop(name, None)
        if runtime is None:
            return
        if runtime.watcher is not None and runtime.watcher is not asyncio.current_task():
            runtime.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runtime.watcher
        await runtime.close_channels()

    async def _discard(self, vm: VmRecord) -> None:
        """Remove every trace of a VM: process, run files, disk, database row."""
        runtime = self.runtimes.get(vm.name)
        if runtime is not None:
            runtime.expected_exit = True
            if pid_alive(runtime.pid, runtime.run_dir):
                await asyncio.to_thread(terminate, runtime.pid, runtime.run_dir, 5.0)
            await self._forget_runtime(vm.name)
        limits.release(vm.id)
        shutil.rmtree(self.vm_dir(vm), ignore_errors=True)
        self.store.delete(vm.id)
        if self.on_removed is not None:
            await self.on_removed(vm)

    # -- supervision ---------------------------------------------------------------------------

    async def _watch(self, name: str, runtime: VmRuntime) -> None:
        """Notice QEMU exiting on its own and record why."""
        exit_code = await wait_exit(runtime.pid)
        runtime.exited.set()
        if runtime.expected_exit:
            return
        async with self.lock(name):
            vm = self.store.find(name)
            if vm is None or self.runtimes.get(name) is not runtime:
                return
            powered_off = boot.guest_powered_off(runtime, exit_code)
            state = VmState.STOPPED if powered_off else VmState.FAILED
            error = None if powered_off else boot.exit_reason(runtime.run_dir)
            self.runtimes.pop(name, None)
            await runtime.close_channels()
            boot.clean_run_dir(runtime.run_dir)
            limits.release(vm.id)
            self.store.update(vm.with_changes(state=state, pid=None, error=error))
            self.store.add_event(name, str(state), error or "the guest powered off")

    async def reattach(self) -> None:
        """After a daemon (re)start: adopt every QEMU still running, fail the vanished."""
        for vm in self.store.list():
            if vm.state not in ACTIVE_STATES:
                continue
            run_dir = self.vm_dir(vm) / "run"
            if vm.pid is None or not pid_alive(vm.pid, run_dir):
                reason = "QEMU exited while bungalowd was not running"
                self.store.update(vm.with_changes(state=VmState.FAILED, pid=None, error=reason))
                self.store.add_event(vm.name, "failed", reason)
                boot.clean_run_dir(run_dir)
                continue
            log.info("reattaching to %s (pid %s)", vm.name, vm.pid)
            try:
                runtime = await boot.adopt(vm.pid, run_dir, paused=vm.state is VmState.PAUSED)
            except BungalowError as exc:
                log.warning("could not reattach to %s: %s", vm.name, exc.message)
                runtime = VmRuntime(pid=vm.pid, run_dir=run_dir)
            self.runtimes[vm.name] = runtime
            runtime.watcher = asyncio.create_task(self._watch(vm.name, runtime))
            await netshaping.reattach(vm, run_dir, partial(self.store.add_event, vm.name))
            netshaping.supervise(vm.name, runtime, self.store)
            with contextlib.suppress(BungalowError):
                await self.apply_limits(vm, runtime)
            if vm.state in (VmState.STARTING, VmState.STOPPING) and runtime.agent is not None:
                self.store.update(vm.with_changes(state=VmState.RUNNING))
            log.info("reattached to %s (pid %s)", vm.name, vm.pid)

        await self._sweep_leftovers()

    async def _sweep_leftovers(self) -> None:
        """VM directories no row names are leftovers of a daemon killed mid-way (a half-made
        VM or sandbox template): end their QEMU if one still runs, and remove them."""
        known = {vm.id for vm in self.store.list()}
        if not self.data.vms.exists():
            return
        for directory in self.data.vms.iterdir():
            if directory.name in known:
                continue
            await kill_leftover(directory / "run")
            shutil.rmtree(directory, ignore_errors=True)
            log.info("removed the leftover VM directory %s", directory.name)

    async def close(self) -> None:
        """Let go of every VM without stopping it: they outlive the daemon."""
        for name in list(self.runtimes):
            runtime = self.runtimes.pop(name)
            if runtime.watcher is not None:
                runtime.watcher.cancel()
            await runtime.close_channels()

    # -- guest access --------------------------------------------------------------------------

    async def agent(self, name: str, action: str) -> AgentChannel:
        vm = self.store.get(name)
        require_running(name, vm.state, action)
        return await self.agent_unlocked(vm, action)

    async def agent_unlocked(self, vm: VmRecord, action: str) -> AgentChannel:
        """The VM's agent channel, reconnected if it dropped."""
        name = vm.name
        if vm.profile == "pc" and self.images.get(vm.image_id).kind != "linux":
            raise AgentError(
                f"Cannot {action}: the VM {name} boots an imported disk without the bungalow "
                f"agent; use `bungalow console {name}` instead."
            )
        runtime = self.runtimes.get(name)
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

    def _ports_in_use(self, exclude: str | None = None) -> set[tuple[str, int, str]]:
        """Host ports that other VMs of this daemon have claimed."""
        return boot.claimed_ports(vm for vm in self.store.list() if vm.name != exclude)
