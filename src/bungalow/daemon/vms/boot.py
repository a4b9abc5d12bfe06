"""The steps between a VM record and a running guest, kept apart from the manager's locking.

Booting starts QEMU and waits for the guest agent, retrying the rare TCG boot
that hangs before any output (about 2 in 100 on microvm: docs/architecture.md,
"The life of a request"); resuming starts QEMU from a snapshot's memory and
devices instead; adopting reconnects to a QEMU an earlier daemon started.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from bungalow.arch import runs_natively
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms import diskfull, media, netshaping, provisioning, timeline, tpm
from bungalow.daemon.vms import firmware as firmware_files
from bungalow.daemon.vms.confine import launch_confined
from bungalow.daemon.vms.nics import AttachedNic, guest_nics, machine_nics
from bungalow.daemon.vms.runtime import VmRuntime
from bungalow.errors import AgentError, QemuError, UserError
from bungalow.guest.channel import AgentChannel
from bungalow.images.store import Image, ImageStore
from bungalow.names import validate_option_path
from bungalow.qemu import migration
from bungalow.qemu.argv import (
    BALLOON_WORD,
    HOTPLUG_WORD,
    RELAY_WARNING,
    USER_NET,
    USER_STUB_WARNING,
    MachineSpec,
    PortForward,
    RunFiles,
    kernel_cmdline,
)
from bungalow.qemu.disk import create_overlay
from bungalow.qemu.monitor import Monitor
from bungalow.qemu.process import pid_alive, terminate, wait_exit

log = logging.getLogger(__name__)

#: Seconds to wait for the agent before a boot counts as hung and is retried.
HANG_TIMEOUT = 45.0
#: The same for guests TCG emulates on another architecture: an aarch64 guest on this
#: x86_64 host boots several times slower (docs/architecture.md, "Other architectures").
FOREIGN_HANG_TIMEOUT = 180.0
BOOT_ATTEMPTS = 3
#: Unix socket paths longer than this do not fit in sockaddr_un.
MAX_SOCKET_PATH = 100
#: Run states in which a VM that should run is continued when adopted.
_HELD = ("paused", "postmigrate", "finish-migrate")


def create_disk(vm_dir: Path, backing: Path | None, size: int) -> None:
    """Make the VM's directory and its disk, a qcow2 overlay on ``backing`` (the image's
    disk, or a snapshot's; None: a blank disk). Blocks: call it in a thread."""
    validate_option_path(str(vm_dir), what="VM directory")
    if len(str(vm_dir / "run" / "console.sock")) > MAX_SOCKET_PATH:
        raise UserError(
            f"The data directory path {vm_dir.parent.parent} is too long for QEMU's sockets; "
            "set BUNGALOW_HOME to a shorter path."
        )
    vm_dir.mkdir(parents=True, mode=0o700)
    (vm_dir / "run").mkdir(mode=0o700)
    create_overlay(vm_dir / "disk.qcow2", backing, size)


def machine_spec(
    vm_dir: Path,
    vm: VmRecord,
    image: Image,
    images: ImageStore,
    accel: str,
    nics: Sequence[AttachedNic] = (),
    *,
    balloon: bool = True,
) -> MachineSpec:
    """The machine ``vm`` runs as; blocks while the image's initramfs is made (once).

    With ``balloon`` (config.toml ``[memory] balloon``), a guest booted from its
    kernel gets a virtio-balloon with free page reporting (vms/balloon.py).

    The guest's /init writes the VM's machine-id from the kernel command line, so
    a booting VM needs no request to its agent before it counts as running. With
    ``nics`` (private networks) those are its only network, without TAPs yet
    (nics.with_taps opens them around QEMU's start). A server image's guest gets
    the words that hand it over to systemd (:func:`server_words`).
    """
    initrd = images.initrd_for(image) if image.kind == "linux" else None
    extra = machine_id_word(vm.machine_id) if initrd and vm.machine_id else ""
    if initrd and image.flavour == "server":
        extra = " ".join(filter(None, (extra, *server_words(vm.machine_id))))
    spec = MachineSpec(
        name=vm.name,
        cpus=vm.cpus,
        memory=vm.memory,
        profile="pc" if vm.profile == "pc" else "micro",
        disk=vm_dir / "disk.qcow2",
        kernel=image.kernel if vm.firmware == "bios" else firmware_files.efi_kernel(image),
        initrd=initrd,
        cmdline_extra=extra,
        accel=accel if runs_natively(image.arch) else "tcg",
        ports=tuple(PortForward.parse(text) for text in vm.ports),
        mac=vm.mac,
        run_dir=vm_dir / "run",
        agent=image.kind == "linux",
        net_relay=netshaping.net_bw(vm) is not None,
        seed=provisioning.seed_of(vm_dir, vm),
        display=vm.profile == "pc",
        arch=image.arch,
        cdrom=media.medium_path(images, vm),
        cdrom_drive=media.has_drive(image),
        reboot=image.kind != "linux",
        balloon=balloon and image.kind == "linux",
        **firmware_files.spec_fields(vm, vm_dir, vm_dir / "run"),
    )
    spec = machine_nics(spec, nics)
    # The command line its guest booted with is kept, so a snapshot of it loads.
    return spec if vm.cmdline is None else with_cmdline(spec, vm.cmdline)


def with_cmdline(spec: MachineSpec, cmdline: str | None) -> MachineSpec:
    """``spec`` booted (or saved) with ``cmdline``, and so with the devices that machine had:
    PCIe root ports only if it let the guest hot-plug, a balloon only if it booted with one
    (a machine saved before balloons, or booted with ``[memory] balloon = false``, has
    none in its stream), and with NICs, a user-mode network stub if it booted on user-mode
    networking (a sandbox template's clone on a network)."""
    if cmdline is None:
        return spec
    words = cmdline.split()
    if HOTPLUG_WORD not in words:
        spec = dataclasses.replace(spec, hotplug_ports=0)
    spec = dataclasses.replace(spec, balloon=BALLOON_WORD in words)
    if spec.nics and set(USER_NET.words()) <= set(words):
        spec = dataclasses.replace(spec, user_stub=True)
    return dataclasses.replace(spec, cmdline=cmdline)


def boot_sets_network(spec: MachineSpec) -> bool:
    """Whether the guest's /init configures every NIC of ``spec`` from the command line it
    boots with; else the agent must (a second NIC, or a command line kept from before)."""
    if not spec.nics or spec.net is None:
        return True
    return len(spec.nics) == 1 and set(spec.net.words()) <= set(kernel_cmdline(spec).split())


def server_words(machine_id: str | None) -> tuple[str, ...]:
    """The kernel command line words of a server image's guest.

    ``bungalow.init=systemd`` makes /init switch root to /sbin/init
    (images/initramfs_init.sh); ``systemd.machine_id=`` is the id systemd takes
    at boot, over whatever /etc/machine-id says; ``net.ifnames=0`` keeps the
    first NIC ``eth0``, as the agent and the metrics know it.
    """
    words = ["bungalow.init=systemd", "net.ifnames=0"]
    if machine_id:
        words.append(f"systemd.machine_id={machine_id}")
    return tuple(words)


def machine_id_word(machine_id: str) -> str:
    """The kernel command line word from which the guest's /init writes /etc/machine-id."""
    return f"bungalow.machine_id={machine_id}"


def boot_sets_machine_id(spec: MachineSpec, machine_id: str) -> bool:
    """Whether booting ``spec`` writes ``machine_id`` itself; else the agent must be told.

    A VM that booted before /init could, or that was cloned from a running
    one, boots with the command line it first booted with, which names no
    machine-id or another VM's.
    """
    return spec.initrd is not None and machine_id_word(machine_id) in kernel_cmdline(spec).split()


async def start_qemu(spec: MachineSpec, net_bw: int | None) -> int:
    """Start QEMU for ``spec`` (after its swtpm, if it has a TPM) and, when its NIC is
    relayed, the network shaper at ``net_bw``."""
    await asyncio.to_thread(tpm.start_for, spec)
    try:
        pid = await asyncio.to_thread(launch_confined, spec)
    except BaseException:
        await asyncio.to_thread(tpm.stop, spec)
        raise
    if spec.net_relay:
        try:
            await netshaping.start(spec.run_dir, net_bw)
        except BaseException:
            await asyncio.to_thread(terminate, pid, spec.run_dir, 5.0)
            await asyncio.to_thread(clean_run_dir, spec.run_dir)
            raise
    return pid


async def boot_until_ready(spec: MachineSpec, image: Image, net_bw: int | None) -> VmRuntime:
    """Start QEMU and wait for the guest agent; retry a boot that hangs, fail one that dies."""
    last_error: Exception | None = None
    for attempt in range(BOOT_ATTEMPTS):
        timeline.retried(attempt + 1)
        pid = await start_qemu(spec, net_bw)
        runtime = VmRuntime(pid=pid, run_dir=spec.run_dir)
        try:
            await _wait_ready(runtime, image, spec.name)
            return runtime
        except TimeoutError as exc:
            last_error = exc
        except BaseException:
            await kill(runtime)
            raise
        await kill(runtime)
    raise QemuError(
        f"The VM {spec.name} did not become ready in {BOOT_ATTEMPTS} attempts "
        f"({last_error}); see `bungalow logs {spec.name}`."
    )


async def resume_snapshot(
    spec: MachineSpec,
    state: Path,
    *,
    cmdline: str | None,
    ram: Path,
    net_bw: int | None = None,
) -> VmRuntime:
    """Start QEMU from a saved state instead of booting: load, continue, reach the agent.

    The guest RAM is ``ram`` mapped privately (copy-on-write), so every VM
    started from one snapshot shares the pages none of them has written.
    """
    spec = dataclasses.replace(
        with_cmdline(spec, cmdline), memory_file=ram, memory_shared=False, incoming=True
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
            spec.name, launched - began, loaded - launched, time.monotonic() - loaded,
        )  # fmt: skip
    except QemuError as exc:
        # QEMU's own reason (a device the saved state has and this machine lacks) is in
        # qemu.err, which goes with the run directory.
        reason = await asyncio.to_thread(exit_reason, spec.run_dir)
        with contextlib.suppress(OSError):
            said = RunFiles(spec.run_dir).stderr.read_text(errors="replace").strip()
            log.warning("%s: resuming failed; QEMU said: %s", spec.name, said[-2000:])
        await kill(runtime)
        raise QemuError(f"{exc.message.rstrip('.')}; {reason}.") from None
    except BaseException:
        await kill(runtime)
        raise
    return runtime


async def sync_guest(
    runtime: VmRuntime,
    vm: VmRecord,
    *,
    identity: bool = True,
    nics: Sequence[AttachedNic] = (),
) -> None:
    """Set the guest's clock (and with ``identity`` its name, machine-id, MAC or ``nics``'
    MACs and addresses, and entropy)."""
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
        mac=None if nics else vm.mac,
        nics=guest_nics(nics) or None,
    )


async def _wait_ready(runtime: VmRuntime, image: Image, name: str) -> None:
    files = RunFiles(runtime.run_dir)
    runtime.attach_monitor(await Monitor.connect(files.qmp, timeout=10))
    timeline.mark("qemu")
    if image.kind != "linux":
        return
    exit_task = asyncio.create_task(wait_exit(runtime.pid))
    timeout = HANG_TIMEOUT if runs_natively(image.arch) else FOREIGN_HANG_TIMEOUT
    agent_task = asyncio.create_task(AgentChannel.connect(files.agent, timeout=timeout))
    done, _ = await asyncio.wait({exit_task, agent_task}, return_when=asyncio.FIRST_COMPLETED)
    if exit_task in done:
        agent_task.cancel()
        with contextlib.suppress(BaseException):
            await agent_task
        reason = await asyncio.to_thread(exit_reason, runtime.run_dir)
        raise QemuError(f"The VM {name} stopped while booting: {reason}")
    exit_task.cancel()
    try:
        runtime.agent = agent_task.result()
    except AgentError as exc:
        raise TimeoutError(exc.message) from None
    timeline.mark("guest")


async def kill(runtime: VmRuntime) -> None:
    """End the QEMU of ``runtime`` at once and clear its run directory."""
    runtime.expected_exit = True
    await runtime.close_channels()
    if pid_alive(runtime.pid, runtime.run_dir):
        await asyncio.to_thread(terminate, runtime.pid, runtime.run_dir, 5.0)
    await asyncio.to_thread(clean_run_dir, runtime.run_dir)


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


async def adopt(pid: int, run_dir: Path, *, running: bool, agent: bool) -> VmRuntime:
    """Reconnect to a QEMU an earlier daemon started; QemuError if its monitor is dead.

    That daemon may have died while saving a snapshot: an outgoing migration
    still under way is cancelled and waited for, and a VM that should run
    (``running``) and is held paused or after its migration continues. A
    paused VM's agent cannot answer, so none is sought for it, nor for one QEMU holds
    because its disk filled up (``io-error``, recorded paused once watched: diskfull.py).
    """
    files = RunFiles(run_dir)
    runtime = VmRuntime(pid=pid, run_dir=run_dir)
    try:
        monitor = await Monitor.connect(files.qmp, timeout=5)
    except QemuError as exc:
        raise QemuError(f"QEMU does not answer on its monitor ({exc.message})") from None
    runtime.attach_monitor(monitor)
    status = await migration.settle(monitor)
    if status == "io-error":
        # Held after a write found the host's disk full (only ENOSPC stops a guest: QEMU's
        # default werror=enospc, rerror=report); the VM service records it paused.
        runtime.held_by_io_error(diskfull.NOSPACE)
        return runtime
    if running and status in _HELD:
        await monitor.cont()
    if running and agent:
        try:
            # Short: a busy agent is reached again on first use (VmManager.agent_unlocked).
            runtime.agent = await AgentChannel.connect(files.agent, timeout=3)
        except AgentError:
            runtime.agent = None
    return runtime


async def answers(run_dir: Path, *, agent: bool) -> bool:
    """Whether the QEMU of ``run_dir`` runs its guest and (with ``agent``) the guest's agent
    answers, each within 3 s; it lets go of both connections again (a start an earlier
    daemon got this far is finished rather than undone)."""
    files = RunFiles(run_dir)
    try:
        async with await Monitor.connect(files.qmp, timeout=3) as monitor:
            if await monitor.status() != "running":
                return False
    except QemuError:
        return False
    if not agent:
        return True
    try:
        channel = await AgentChannel.connect(files.agent, timeout=3)
    except AgentError:
        return False
    await channel.close()
    return True


def guest_powered_off(runtime: VmRuntime, exit_code: int | None) -> bool:
    """Did the guest power itself off (rather than crash, reset, or QEMU die)?

    QMP's SHUTDOWN event says why QEMU is ending: ``guest-shutdown`` is a power-off;
    with ``-no-reboot`` a guest's reset or kernel panic ends QEMU too, with the same
    status 0. Without the event (QEMU gone before the daemon heard it), status 0 of
    our own child is taken as a power-off.
    """
    if runtime.shutdown_reason is not None:
        return runtime.shutdown_reason == "guest-shutdown"
    return exit_code == 0


def shutdown_cause(runtime: VmRuntime) -> str | None:
    """A sentence for a guest that ended itself other than by powering off, if QMP said."""
    return {
        "guest-reset": "the guest reset itself (after a kernel crash, most likely), which "
        "ends its QEMU; see `bungalow logs`",
        "guest-panic": "the guest's kernel panicked; see `bungalow logs`",
    }.get(runtime.shutdown_reason or "")


def exit_reason(run_dir: Path) -> str:
    """One line on why QEMU went away: its own last error, else the console's last line."""
    files = RunFiles(run_dir)
    for path in (files.stderr, files.console_log):
        with contextlib.suppress(OSError):
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
            lines = [
                ln for ln in lines if ln and RELAY_WARNING not in ln and USER_STUB_WARNING not in ln
            ]
            if lines:
                return f"QEMU exited; last output: {lines[-1][:200]}"
    return "QEMU exited without a message"


def clean_run_dir(run_dir: Path) -> None:
    """End the network shaper and the swtpm, remove sockets and pidfiles; keep the console log.

    Blocks up to a few seconds when a shaper must be ended: call it in a thread.
    """
    netshaping.stop(run_dir)
    tpm.stop(RunFiles(run_dir.absolute()))
    files = RunFiles(run_dir)
    for path in (*files.sockets(), files.pidfile):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
