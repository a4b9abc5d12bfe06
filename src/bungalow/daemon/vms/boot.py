"""The steps between a VM record and a running guest, kept apart from the manager's locking.

Planning checks a request against the host before anything is written; booting
starts QEMU and waits for the guest agent, retrying the rare TCG boot that hangs
before any output (DESIGN.md measured 2 in 100 on microvm).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.store import VmRecord
from bungalow.daemon.vms import netshaping
from bungalow.daemon.vms.confine import launch_confined
from bungalow.daemon.vms.requests import CreateRequest
from bungalow.daemon.vms.runtime import VmRuntime
from bungalow.errors import AgentError, CapacityError, ConflictError, QemuError, UserError
from bungalow.guest.channel import AgentChannel
from bungalow.host.ports import port_in_use
from bungalow.host.resources import HostCapacity, check_fits
from bungalow.images.store import Image, ImageStore
from bungalow.names import validate_option_path
from bungalow.qemu import migration
from bungalow.qemu.argv import RELAY_WARNING, MachineSpec, PortForward, RunFiles
from bungalow.qemu.monitor import Monitor
from bungalow.qemu.process import pid_alive, terminate, wait_exit
from bungalow.units import format_size

log = logging.getLogger(__name__)

#: Seconds to wait for the agent before a boot counts as hung and is retried.
HANG_TIMEOUT = 45.0
BOOT_ATTEMPTS = 3
#: Unix socket paths longer than this do not fit in sockaddr_un.
MAX_SOCKET_PATH = 100


def plan_vm(
    request: CreateRequest,
    image: Image,
    capacity: HostCapacity,
    claimed: set[tuple[str, int, str]],
) -> VmRecord:
    """Turn a create request into a record, refusing what the host cannot give."""
    disk = request.disk if request.disk is not None else max(image.virtual_size, 4 << 30)
    if disk < image.virtual_size:
        raise UserError(
            f"The disk size {format_size(disk)} is smaller than the image {image.name} "
            f"({format_size(image.virtual_size)}); use --disk {format_size(image.virtual_size)} "
            "or more."
        )
    if request.cpus < 1:
        raise UserError("A VM needs at least 1 CPU; use --cpus 1 or more.")
    if request.memory < 128 << 20:
        raise UserError("A VM needs at least 128M of memory; use --memory 128M or more.")
    if request.accel not in ("auto", "kvm", "tcg"):
        raise UserError(f"The accelerator {request.accel!r} is unknown; use auto, kvm or tcg.")
    profile = request.profile or ("micro" if image.kind == "linux" else "pc")
    if profile not in ("micro", "pc"):
        raise UserError(f"The machine profile {profile!r} is unknown; use micro or pc.")
    if profile == "micro" and image.kind != "linux":
        raise UserError(
            f"The image {image.name} is a plain disk and needs firmware; use --profile pc."
        )
    check_fits(request.cpus, request.memory, disk, capacity)
    ports = [PortForward.parse(text) for text in request.ports]
    check_ports_free([str(p) for p in ports], claimed)
    return VmRecord(
        id="",
        name=request.name,
        state=VmState.CREATED,
        image_id=image.id,
        image_name=image.name or image.short_id,
        profile=profile,
        cpus=request.cpus,
        memory=request.memory,
        disk_size=disk,
        ports=[str(p) for p in ports],
        accel=request.accel,
        sandbox=request.sandbox,
        expires_at=request.expires_at,
        on_expiry=request.on_expiry,
        idle=request.idle,
        limits=request.limits,
        project=request.project,
        owner=request.owner,
        labels=request.labels,
        created_by=request.created_by,
        origin=request.origin or f"image {image.name or image.short_id}",
    )


def claimed_ports(vms: Iterable[VmRecord]) -> set[tuple[str, int, str]]:
    claimed: set[tuple[str, int, str]] = set()
    for vm in vms:
        for text in vm.ports:
            port = PortForward.parse(text)
            claimed.add((port.host_addr, port.host_port, port.protocol))
    return claimed


def check_ports_free(ports: Iterable[str], claimed: set[tuple[str, int, str]]) -> None:
    for text in ports:
        port = PortForward.parse(text)
        key = (port.host_addr, port.host_port, port.protocol)
        if key in claimed or port_in_use(port.host_addr, port.host_port, port.protocol):
            raise ConflictError(
                f"Host port {port.host_port}/{port.protocol} is already in use; "
                f"choose another host port, e.g. -p {port.host_port + 1}:{port.guest_port}."
            )


def create_disk(vm_dir: Path, image: Image, size: int, *, backing: Path | None = None) -> None:
    """The VM's disk: a qcow2 overlay on the immutable image (or a snapshot's disk)."""
    validate_option_path(str(vm_dir), what="VM directory")
    if len(str(vm_dir / "run" / "console.sock")) > MAX_SOCKET_PATH:
        raise UserError(
            f"The data directory path {vm_dir.parent.parent} is too long for QEMU's sockets; "
            "set BUNGALOW_HOME to a shorter path."
        )
    vm_dir.mkdir(parents=True, mode=0o700)
    (vm_dir / "run").mkdir(mode=0o700)
    result = subprocess.run(
        [
            "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
            "-b", str(backing or image.disk), str(vm_dir / "disk.qcow2"), str(size),
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no output"
        if "No space left" in detail:
            raise CapacityError(
                f"The disk holding {vm_dir} is full; free some space and try again."
            )
        raise QemuError(f"qemu-img could not create the VM's disk ({detail}).")


def machine_spec(
    vm_dir: Path, vm: VmRecord, image: Image, images: ImageStore, accel: str
) -> MachineSpec:
    initrd = images.initrd_for(image) if image.kind == "linux" else None
    return MachineSpec(
        name=vm.name,
        cpus=vm.cpus,
        memory=vm.memory,
        profile="pc" if vm.profile == "pc" else "micro",
        disk=vm_dir / "disk.qcow2",
        kernel=image.kernel,
        initrd=initrd,
        cmdline_extra="",
        accel=accel,
        ports=tuple(PortForward.parse(text) for text in vm.ports),
        mac=vm.mac,
        run_dir=vm_dir / "run",
        agent=image.kind == "linux",
        net_relay=netshaping.net_bw(vm) is not None,
    )


async def start_qemu(spec: MachineSpec, net_bw: int | None) -> int:
    """Start QEMU for ``spec`` and, when its NIC is relayed, the network shaper at ``net_bw``."""
    pid = await asyncio.to_thread(launch_confined, spec)
    if spec.net_relay:
        try:
            await netshaping.start(spec.run_dir, net_bw)
        except BaseException:
            await asyncio.to_thread(terminate, pid, spec.run_dir, 5.0)
            clean_run_dir(spec.run_dir)
            raise
    return pid


async def boot_until_ready(
    vm_dir: Path, vm: VmRecord, image: Image, images: ImageStore, accel: str
) -> VmRuntime:
    """Start QEMU and wait for the guest agent; retry a boot that hangs, fail one that dies."""
    began = time.monotonic()
    spec = await asyncio.to_thread(machine_spec, vm_dir, vm, image, images, accel)
    last_error: Exception | None = None
    for attempt in range(BOOT_ATTEMPTS):
        launched = time.monotonic()
        pid = await start_qemu(spec, netshaping.net_bw(vm))
        runtime = VmRuntime(pid=pid, run_dir=spec.run_dir)
        try:
            started = time.monotonic()
            await _wait_ready(runtime, image, vm.name)
            log.info(
                "%s ready: spec %.2fs, qemu start %.2fs, guest boot %.2fs (attempt %d)",
                vm.name, launched - began, started - launched, time.monotonic() - started,
                attempt + 1,
            )  # fmt: skip
            return runtime
        except TimeoutError as exc:
            last_error = exc
        except BaseException:
            await kill(runtime)
            raise
        await kill(runtime)
    raise QemuError(
        f"The VM {vm.name} did not become ready in {BOOT_ATTEMPTS} attempts "
        f"({last_error}); see `bungalow logs {vm.name}`."
    )


async def resume_snapshot(
    spec: MachineSpec,
    state: Path,
    *,
    cmdline: str | None,
    ram: Path,
    name: str,
    net_bw: int | None = None,
) -> VmRuntime:
    """Start QEMU from a saved state instead of booting: load, continue, reach the agent.

    The guest RAM is ``ram`` mapped privately (copy-on-write), so every VM
    started from one snapshot shares the pages none of them has written.
    """
    spec = dataclasses.replace(
        spec, memory_file=ram, memory_shared=False, incoming=True, cmdline=cmdline
    )
    began = time.monotonic()
    pid = await start_qemu(spec, net_bw)
    runtime = VmRuntime(pid=pid, run_dir=spec.run_dir)
    try:
        files = RunFiles(spec.run_dir)
        monitor = await Monitor.connect(files.qmp, timeout=10)
        runtime.attach_monitor(monitor)
        launched = time.monotonic()
        await migration.set_ignore_shared(monitor)
        await migration.load(monitor, state, timeout=60)
        loaded = time.monotonic()
        await monitor.cont()
        if spec.agent:
            runtime.agent = await AgentChannel.connect(files.agent, timeout=20)
        log.info(
            "%s resumed: qemu start %.3fs, load %.3fs, agent %.3fs",
            name, launched - began, loaded - launched, time.monotonic() - loaded,
        )  # fmt: skip
    except BaseException:
        await kill(runtime)
        raise
    return runtime


async def sync_guest(runtime: VmRuntime, vm: VmRecord, *, identity: bool = True) -> None:
    """Set the guest's clock (and with ``identity`` its name, machine-id, MAC and entropy)."""
    if runtime.agent is None:
        return
    if not identity:
        await runtime.agent.sync(time=time.time())
        return
    await runtime.agent.sync(
        time=time.time(),
        hostname=vm.name,
        machine_id=vm.machine_id or None,
        entropy=os.urandom(64),
        mac=vm.mac,
    )


async def _wait_ready(runtime: VmRuntime, image: Image, name: str) -> None:
    files = RunFiles(runtime.run_dir)
    runtime.attach_monitor(await Monitor.connect(files.qmp, timeout=10))
    if image.kind != "linux":
        return
    exit_task = asyncio.create_task(wait_exit(runtime.pid))
    agent_task = asyncio.create_task(AgentChannel.connect(files.agent, timeout=HANG_TIMEOUT))
    done, _ = await asyncio.wait({exit_task, agent_task}, return_when=asyncio.FIRST_COMPLETED)
    if exit_task in done:
        agent_task.cancel()
        with contextlib.suppress(BaseException):
            await agent_task
        raise QemuError(f"The VM {name} stopped while booting: {exit_reason(runtime.run_dir)}")
    exit_task.cancel()
    try:
        runtime.agent = agent_task.result()
    except AgentError as exc:
        raise TimeoutError(exc.message) from None


async def kill(runtime: VmRuntime) -> None:
    runtime.expected_exit = True
    await runtime.close_channels()
    if pid_alive(runtime.pid, runtime.run_dir):
        await asyncio.to_thread(terminate, runtime.pid, runtime.run_dir, 5.0)
    clean_run_dir(runtime.run_dir)


async def graceful_poweroff(runtime: VmRuntime, timeout: float) -> None:
    """Ask the agent (else ACPI) to power the guest off and wait up to ``timeout``."""
    deadline = time.monotonic() + timeout
    asked = False
    if runtime.agent is not None and not runtime.agent.closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runtime.agent.shutdown(), timeout=min(timeout, 10))
            asked = True
    if not asked and runtime.monitor is not None:
        with contextlib.suppress(Exception):
            await runtime.monitor.powerdown()
    remaining = max(0.0, deadline - time.monotonic())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wait_exit(runtime.pid), timeout=remaining)
        runtime.exited.set()


async def adopt(pid: int, run_dir: Path, *, paused: bool = False) -> VmRuntime:
    """Reconnect to a QEMU started by an earlier daemon.

    A VM that should run but is paused was being snapshotted when that daemon
    died: it continues. A paused one's agent cannot answer, so none is sought.
    """
    files = RunFiles(run_dir)
    runtime = VmRuntime(pid=pid, run_dir=run_dir)
    with contextlib.suppress(Exception):
        runtime.attach_monitor(await Monitor.connect(files.qmp, timeout=5))
    if runtime.monitor is not None and not paused:
        with contextlib.suppress(QemuError):
            if await runtime.monitor.status() in ("paused", "postmigrate"):
                await runtime.monitor.cont()
    if not paused and files.agent.exists():
        try:
            runtime.agent = await AgentChannel.connect(files.agent, timeout=15)
        except AgentError:
            runtime.agent = None
    return runtime


def guest_powered_off(runtime: VmRuntime, exit_code: int | None) -> bool:
    """Did the guest power itself off (rather than QEMU dying)?

    QEMU exits 0 when the guest powers off; the exit code is known only for our
    own children, so QMP's SHUTDOWN event is the other witness.
    """
    return exit_code == 0 or runtime.guest_shutdown


def exit_reason(run_dir: Path) -> str:
    """One line on why QEMU went away: its own last error, else the console's last line."""
    files = RunFiles(run_dir)
    for path in (files.stderr, files.console_log):
        with contextlib.suppress(OSError):
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
            lines = [ln for ln in lines if ln and RELAY_WARNING not in ln]
            if lines:
                return f"QEMU exited; last output: {lines[-1][:200]}"
    return "QEMU exited without a message"


def clean_run_dir(run_dir: Path) -> None:
    """End the network shaper, remove sockets and pidfiles; keep the console log."""
    netshaping.stop(run_dir)
    files = RunFiles(run_dir)
    for path in (*files.sockets(), files.pidfile):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
