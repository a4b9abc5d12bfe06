"""What a VM is made of, and the QEMU command line that makes it.

A :class:`MachineSpec` is checked when it is built, so a bad path or port is a
clear error before any file exists; :func:`build_argv` then turns it into the
QEMU argv for one of two profiles:

- ``micro``: ``-M microvm`` with virtio-mmio devices and direct kernel boot, the
  fastest start (1.7 s to an idle guest against 2.2 s for q35 under TCG). ACPI
  stays on because the Debian kernel finds virtio-mmio devices through it.
- ``pc``: ``-M q35`` with virtio-pci devices and SeaBIOS, which boots any disk or
  ISO, for other and older operating systems; or OVMF from two pflash drives
  (``firmware``, ``vars_file``: qemu/firmware/), and a swtpm TPM (``tpm_socket``).

The guest's architecture (``arch``) picks the board: x86_64 and i386 guests
run on the machines above (qemu-system-x86_64 runs 32-bit kernels too); an
aarch64 guest runs on ``-M virt`` under qemu-system-aarch64, with its kernel
booted directly (QEMU's loader takes Debian's gzip'd ``Image``), virtio-mmio
devices found through the device tree QEMU writes, and its console on the
PL011 (``ttyAMA0``). See :mod:`bungalow.qemu.boards`.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bungalow.arch import ARCH_INFO, DEFAULT_ARCH, Arch
from bungalow.errors import UserError
from bungalow.names import validate_name, validate_option_path
from bungalow.qemu.accel import ACCEL_NAMES, accel_arg, host_tsc_khz
from bungalow.qemu.boards import BOARDS, ram_id
from bungalow.qemu.disk import DiskIo, choose_disk_io, disk_format
from bungalow.qemu.firmware.flash import FlashPair, pflash_args
from bungalow.qemu.tpm import tpm_args

Profile = Literal["micro", "pc"]
PROFILES: tuple[Profile, ...] = ("micro", "pc")
MIB = 1 << 20
MIN_MEMORY = 16 * MIB
MAX_UNIX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL
AGENT_PORT_NAME = "org.bungalow.agent"
GUEST_IP = "10.0.2.15/24"
GUEST_GATEWAY = "10.0.2.2"
# Locally administered, unicast (second-lowest bit of the first octet set, lowest clear).
# Two fixed octets leave four random ones, so collisions stay unlikely on a shared bridge.
MAC_PREFIX = "0e:b6"
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NIC_ID_RE = re.compile(r"^nic[0-9]$")
_FORWARD_RE = re.compile(
    r"^(?:(?P<addr>[^:/]+):)?(?P<host>[^:/]+):(?P<guest>[^:/]+)(?:/(?P<proto>\w+))?$"
)
# QEMU 7.2 only lets -daemonize fork and setsid when privilege changes are allowed,
# so the sandbox denies obsolete and resource-control system calls but not those.
SANDBOX = "on,obsolete=deny,resourcecontrol=deny"
#: What QEMU 7.2 prints on every start of a relayed NIC (see ``_network_args``): no reason.
RELAY_WARNING = "warning: hub 0 with no nics"
#: What QEMU says of ``user_stub``'s network: no NIC uses it, which is the point.
USER_STUB_WARNING = "warning: netdev net0 has no peer"
#: The qdev id of a pc VM's CD-ROM drive (``ide-cd``), which QMP's eject and
#: blockdev-change-medium name; its block backend is ``cd0``.
CDROM_ID = "cdrom0"
#: The I/O port of QEMU's ``isa-debugcon``: SeaBIOS (and OVMF) write their debug log to it.
DEBUGCON_PORT = "0x402"
#: The kernel command line word that lets a micro guest hot-plug PCIe devices.
HOTPLUG_WORD = "pcie_ports=native"
#: The kernel command line word of a guest booted with a balloon (``MachineSpec.balloon``):
#: its /init loads virtio_balloon, and a saved machine with this word has the device in its
#: stream (daemon/vms/boot.py ``with_cmdline``).
BALLOON_WORD = "bungalow.balloon=1"
#: The qdev id of the balloon device, which QMP's qom-get and qom-set name.
BALLOON_ID = "balloon0"


@dataclass(frozen=True)
class PortForward:
    """A host port that QEMU's user-mode network forwards to a port of the guest."""

    host_port: int
    guest_port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    host_addr: str = "127.0.0.1"

    def __post_init__(self) -> None:
        for which, port in (("host", self.host_port), ("guest", self.guest_port)):
            if not 1 <= port <= 65535:
                raise UserError(
                    f"The {which} port {port} in {self} is outside 1-65535; choose a port "
                    "between 1 and 65535."
                )
        if self.protocol not in ("tcp", "udp"):
            raise UserError(f"The protocol {self.protocol!r} in {self} is not tcp or udp.")
        try:
            ipaddress.IPv4Address(self.host_addr)
        except ValueError:
            raise UserError(
                f"The address {self.host_addr!r} in {self} is not an IPv4 address; "
                "use 127.0.0.1 (this host only) or 0.0.0.0 (every interface)."
            ) from None

    @classmethod
    def parse(cls, text: str) -> PortForward:
        """``8080:80``, ``0.0.0.0:8080:80`` or ``5353:53/udp``, as a user types it."""
        match = _FORWARD_RE.match(text.strip())
        if not match or not match["host"].isdigit() or not match["guest"].isdigit():
            raise UserError(
                f"The port forward {text!r} is not valid; write HOST:GUEST, "
                "ADDRESS:HOST:GUEST or HOST:GUEST/udp, such as 8080:80."
            )
        protocol = (match["proto"] or "tcp").lower()
        if protocol not in ("tcp", "udp"):
            raise UserError(f"The protocol {match['proto']!r} in {text!r} is not tcp or udp.")
        return cls(
            host_port=int(match["host"]),
            guest_port=int(match["guest"]),
            protocol="udp" if protocol == "udp" else "tcp",
            host_addr=match["addr"] or "127.0.0.1",
        )

    def hostfwd(self) -> str:
        """The ``hostfwd=`` value of ``-netdev user``."""
        return f"{self.protocol}:{self.host_addr}:{self.host_port}-:{self.guest_port}"

    def __str__(self) -> str:
        return f"{self.host_addr}:{self.host_port}:{self.guest_port}/{self.protocol}"


@dataclass(frozen=True)
class NicSpec:
    """A NIC on a private network: QEMU's ``-netdev tap,fd=`` with a TAP the daemon opened.

    ``fd`` is the daemon's descriptor for the TAP (host/net/tap.py), passed to QEMU's
    process as is; None for a QEMU that never runs its guest (a snapshot's converter),
    whose NIC needs no backend. ``id`` names the netdev and device (``nic0``,
    ``nic1``...), which a migration stream and a later hot-unplug refer to.
    """

    id: str
    fd: int | None
    mac: str

    def __post_init__(self) -> None:
        if not _NIC_ID_RE.match(self.id):
            raise ValueError(f"the NIC id {self.id!r} is not nic0-nic9")
        check_mac(self.mac)


@dataclass(frozen=True)
class NetConfig:
    """How the guest's first NIC is configured at boot (micro images read it from the
    kernel command line: ``bungalow.ip``, ``bungalow.gw``, ``bungalow.dns``,
    ``bungalow.search``); the network's DNS server is its gateway's dnsmasq."""

    address: str  # ADDRESS/PREFIX
    gateway: str
    dns: str = ""
    search: str = ""

    def words(self) -> list[str]:
        words = [f"bungalow.ip={self.address}", f"bungalow.gw={self.gateway}"]
        if self.dns:
            words.append(f"bungalow.dns={self.dns}")
        if self.search:
            words.append(f"bungalow.search={self.search}")
        return words


USER_NET = NetConfig(address=GUEST_IP, gateway=GUEST_GATEWAY)


@dataclass(frozen=True)
class RunFiles:
    """The files of one running VM, all inside its run directory."""

    run_dir: Path

    @property
    def qmp(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def agent(self) -> Path:
        return self.run_dir / "agent.sock"

    @property
    def console(self) -> Path:
        return self.run_dir / "console.sock"

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "qemu.pid"

    @property
    def net_nic(self) -> Path:
        """Where QEMU listens for the relay that carries the NIC's frames (``net_relay``)."""
        return self.run_dir / "net-nic.sock"

    @property
    def net_wan(self) -> Path:
        """Where QEMU listens for the relay's other end, on the hub with the user network."""
        return self.run_dir / "net-wan.sock"

    @property
    def vnc(self) -> Path:
        """Where QEMU's VNC server listens, password required, for a VM with a display."""
        return self.run_dir / "vnc.sock"

    @property
    def firmware_log(self) -> Path:
        """The firmware's debug log (``isa-debugcon``) of a pc VM, rewritten at each start."""
        return self.run_dir / "firmware.log"

    @property
    def stderr(self) -> Path:
        """QEMU's own messages: why it refused to start, and later why it stopped."""
        return self.run_dir / "qemu.err"

    @property
    def swtpm_socket(self) -> Path:
        """The control channel of the VM's TPM emulator (swtpm), which QEMU connects to."""
        return self.run_dir / "swtpm.sock"

    @property
    def swtpm_pidfile(self) -> Path:
        return self.run_dir / "swtpm.pid"

    def all(self) -> tuple[Path, ...]:
        return (self.qmp, self.agent, self.console, self.console_log, self.pidfile, self.stderr)

    def sockets(self) -> tuple[Path, ...]:
        return (self.qmp, self.agent, self.console, self.net_nic, self.net_wan, self.vnc)


def check_mac(mac: str) -> None:
    """UserError unless ``mac`` is a unicast MAC address written as QEMU takes it."""
    if not _MAC_RE.match(mac) or int(mac[:2], 16) & 1:
        raise UserError(f"The MAC address {mac!r} is not a unicast address like 0e:b6:12:34:56:78.")


def random_mac() -> str:
    """A fresh locally administered unicast MAC address under bungalow's prefix."""
    return MAC_PREFIX + "".join(f":{byte:02x}" for byte in secrets.token_bytes(4))


@dataclass(frozen=True, kw_only=True)
class MachineSpec:
    """Everything QEMU needs to run one VM; checked on construction.

    ``disk_io`` None means "pick for the disk's file system" (see ``disk.py``);
    ``tsc_khz`` None means "the host's TSC rate as measured" and 0 means "let the
    guest calibrate" (only TCG guests get the hint; see ``_probe.py``).
    """

    name: str
    cpus: int
    memory: int
    profile: Profile
    disk: Path
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline_extra: str = ""
    accel: str
    ports: tuple[PortForward, ...] = ()
    mac: str = field(default_factory=random_mac)
    run_dir: Path
    agent: bool = True
    #: The medium in the CD-ROM drive (an ISO, read-only).
    cdrom: Path | None = None
    #: A CD-ROM drive even with its tray empty (an installer VM's, for a later insert).
    cdrom_drive: bool = False
    #: A guest's reset reboots it (``-no-reboot`` left out): for guests that boot through
    #: firmware on their own, such as an installer rebooting into what it installed. Else a
    #: reset (a crash under ``panic=-1``) ends QEMU, and the daemon records why.
    reboot: bool = False
    disk_io: DiskIo | None = None
    tsc_khz: int | None = None
    #: Guest RAM in this file instead of anonymous memory: shared (a converter
    #: writing a snapshot's memory) or private copy-on-write (a VM started from one).
    memory_file: Path | None = None
    memory_shared: bool = False
    #: Wait for a migration stream instead of booting (``-incoming defer``).
    incoming: bool = False
    #: The exact kernel command line, for a VM resumed from a snapshot of one that booted.
    cmdline: str | None = None
    #: Once set up, QEMU changes root to its run directory and becomes this user and
    #: group (see host/jail.py); None keeps the starting user (a daemon not run as root).
    runas: tuple[int, int] | None = None
    #: The NIC's frames pass through a relay outside QEMU (the network shaper) on two
    #: sockets QEMU listens on; see ``_network_args``.
    net_relay: bool = False
    #: NICs on private networks (TAPs); with any, the VM has no user-mode network.
    nics: tuple[NicSpec, ...] = ()
    #: The first NIC's configuration at boot; None for user-mode networking's fixed one.
    net: NetConfig | None = None
    #: Empty PCIe root ports (``hp1``...) a NIC can be hot-plugged into while it runs.
    hotplug_ports: int = 0
    #: A user-mode network on no NIC beside the NICs: the home of the ``slirp`` state in
    #: the machine state of a VM that ran on one (a sandbox template), which the VM's
    #: NIC replaces (see ``USER_STUB_WARNING``).
    user_stub: bool = False
    #: A cloud-init NoCloud seed (ISO 9660 labelled cidata), attached read-only after the
    #: root disk: /dev/vdb on both profiles, where cloud-init's ds-identify finds it by label.
    seed: Path | None = None
    #: A screen: a VGA adapter and QEMU's VNC server on ``RunFiles.vnc`` (pc only; see
    #: ``_display_args``).
    display: bool = False
    #: The guest's architecture (bungalow/arch.py): picks QEMU's binary and board.
    arch: Arch = DEFAULT_ARCH
    #: The UEFI build the machine runs (pc only); None: SeaBIOS, QEMU's default.
    firmware: FlashPair | None = None
    #: The VM's own copy of the firmware's variable store (pflash unit 1), with ``firmware``.
    vars_file: Path | None = None
    #: The control socket of the swtpm that is the VM's TPM 2.0 (a ``tpm-crb``), pc only;
    #: ``tpm_state`` is that swtpm's state directory.
    tpm_socket: Path | None = None
    tpm_state: Path | None = None
    #: A virtio-balloon with free page reporting (``_balloon_args``): pages the guest
    #: frees go back to the host, and the daemon can take memory back (QMP ``balloon``).
    #: Only for a kernel booted directly, whose command line records it (``BALLOON_WORD``).
    balloon: bool = False

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.cpus < 1:
            raise UserError(f"A VM needs at least 1 CPU; asked for {self.cpus}.")
        if self.memory < MIN_MEMORY or self.memory % MIB:
            raise UserError(
                f"The memory size {self.memory} bytes is not a whole number of MiB of at "
                "least 16M; use a size such as 256M or 1G."
            )
        if self.profile not in PROFILES:
            raise UserError(f"The machine profile {self.profile!r} is not known; use micro or pc.")
        if self.accel not in ACCEL_NAMES:
            raise UserError(f"The accelerator {self.accel!r} is not known; use kvm or tcg.")
        if self.arch not in BOARDS:
            raise UserError(f"The architecture {self.arch!r} is not one bungalow runs.")
        if self.profile == "pc" and BOARDS[self.arch].pc is None:
            raise UserError(
                f"An {self.arch} guest runs on QEMU's virt machine (the micro profile); "
                "drop --profile pc."
            )
        if self.accel == "kvm" and ARCH_INFO[self.arch].binfmt is not None:
            raise UserError(f"KVM runs only this host's own architecture, not {self.arch}.")
        if self.profile == "micro" and self.kernel is None:
            raise UserError("The micro profile boots a kernel directly; give the image's kernel.")
        if self.profile == "micro" and (self.cdrom is not None or self.cdrom_drive):
            raise UserError("The micro profile has no CD-ROM drive; use the pc profile for ISOs.")
        if self.profile == "micro" and self.display:
            raise UserError("The micro profile has no display; use the pc profile for a screen.")
        if self.initrd is not None and self.kernel is None:
            raise UserError("An initrd needs a kernel to go with it; give both or neither.")
        if self.balloon and self.kernel is None:
            raise UserError("A balloon is recorded on the kernel command line; give a kernel.")
        self._check_firmware()
        check_mac(self.mac)
        if self.nics and self.net_relay:
            raise UserError(
                "A network bandwidth limit applies to user-mode networking only; a VM on a "
                "private network has none (remove --net-bw)."
            )
        if self.nics and self.ports:
            raise UserError(
                "A VM on a private network publishes ports through the network's rules, not "
                "QEMU's user-mode forwards."
            )
        self._check_paths()
        self._check_ports()

    def _check_firmware(self) -> None:
        if self.profile == "micro" and (self.firmware is not None or self.tpm_socket is not None):
            raise UserError(
                "The micro profile boots its kernel directly, with no firmware and no TPM; "
                "use --profile pc for --firmware uefi or --tpm."
            )
        if (self.firmware is None) != (self.vars_file is None):
            raise UserError("UEFI firmware needs the VM's vars file, and a vars file needs it.")
        if (self.tpm_socket is None) != (self.tpm_state is None):
            raise UserError("A TPM needs both its socket and its state directory.")

    def _check_paths(self) -> None:
        for what, path in (
            ("disk path", self.disk),
            ("kernel path", self.kernel),
            ("initrd path", self.initrd),
            ("CD-ROM image path", self.cdrom),
            ("run directory", self.run_dir),
            ("memory file", self.memory_file),
            ("cloud-init seed path", self.seed),
            ("vars file", self.vars_file),
            ("TPM socket", self.tpm_socket),
            ("TPM state directory", self.tpm_state),
        ):
            if path is not None:
                validate_option_path(str(path), what=what)
        longest = max(RunFiles(self.run_dir.absolute()).sockets(), key=lambda p: len(bytes(p)))
        if len(bytes(longest)) > MAX_UNIX_SOCKET_PATH:
            raise UserError(
                f"The run directory {self.run_dir} is too long for a Unix socket path "
                f"({len(bytes(longest))} bytes, at most {MAX_UNIX_SOCKET_PATH}); use a shorter "
                "data directory."
            )

    def _check_ports(self) -> None:
        seen: set[tuple[str, int]] = set()
        for forward in self.ports:
            key = (forward.protocol, forward.host_port)
            if key in seen:
                raise UserError(
                    f"Host port {forward.host_port}/{forward.protocol} is forwarded twice; "
                    "give each forward its own host port."
                )
            seen.add(key)


def kernel_cmdline(spec: MachineSpec) -> str:
    """The kernel command line of docs/architecture.md ("Guest boot"), with the TSC hint on TCG."""
    if spec.cmdline is not None:
        return spec.cmdline
    words = [
        # The last console= is /dev/console (the serial log); tty0 puts the boot on the screen.
        *(["console=tty0"] if spec.display else []),
        f"console={BOARDS[spec.arch].console}",
        "quiet",
        "panic=-1",
        "root=/dev/vda",
        f"bungalow.hostname={spec.name}",
        *(spec.net or USER_NET).words(),
    ]
    if spec.hotplug_ports and spec.profile == "micro":
        # microvm's ACPI tables grant the OS no PCIe control (_OSC): without this the
        # guest's pciehp never sees a NIC plugged into a root port.
        words.append(HOTPLUG_WORD)
    if spec.balloon:
        words.append(BALLOON_WORD)
    tsc_khz = _tsc_hint(spec)
    if tsc_khz:
        # TCG's TSC follows the host's clock, but on a busy host the guest's clocksource
        # watchdog sees it late and falls back to jiffies (4 ms steps, slowed with the vCPU).
        words += [f"tsc_early_khz={tsc_khz}", "tsc=reliable"]
    if spec.cmdline_extra.strip():
        words.append(spec.cmdline_extra.strip())
    return " ".join(words)


def _tsc_hint(spec: MachineSpec) -> int | None:
    if spec.accel != "tcg" or not BOARDS[spec.arch].tsc_hint:
        return None
    return host_tsc_khz() if spec.tsc_khz is None else spec.tsc_khz


def build_argv(spec: MachineSpec, qemu_binary: str) -> list[str]:
    """The full argv; every path in it is absolute because ``-daemonize`` changes to ``/``."""
    files = RunFiles(spec.run_dir.absolute())
    argv = [qemu_binary, *_machine_args(spec), *_process_args(files)]
    if spec.profile == "pc":
        argv += _firmware_log_args(files)
    argv += _boot_args(spec)
    argv += _disk_args(spec)
    if spec.firmware is not None and spec.vars_file is not None:
        argv += pflash_args(spec.firmware, spec.vars_file)
    if spec.tpm_socket is not None:
        argv += tpm_args(spec.tpm_socket)
    argv += _nic_args(spec) if spec.nics else _network_args(spec, files)
    if spec.agent:
        argv += _agent_args(spec, files)
    argv += ["-device", _device(spec, "virtio-rng")]
    for port in range(1, spec.hotplug_ports + 1):
        argv += ["-device", f"pcie-root-port,id=hp{port},chassis={port}"]
    if spec.display:  # the PCI slots of the devices before it stay as they were
        argv += _display_args(files)
    if spec.balloon:  # last, for the same reason: a machine without it keeps its slots
        argv += _balloon_args(spec)
    if spec.runas is not None:
        uid, gid = spec.runas
        argv += ["-chroot", str(files.run_dir), "-runas", f"{uid}:{gid}"]
    if spec.incoming:
        argv += ["-incoming", "defer"]
    return argv


def _device(spec: MachineSpec, kind: str) -> str:
    """virtio-mmio (``-device``) on microvm, virtio-pci (``-pci``) on q35."""
    return f"{kind}-device" if spec.profile == "micro" else f"{kind}-pci"


def _machine_args(spec: MachineSpec) -> list[str]:
    board = BOARDS[spec.arch]
    machine = board.micro if spec.profile == "micro" else board.pc or board.micro
    if spec.firmware is not None and spec.firmware.secure_boot:
        machine += ",smm=on"  # Secure Boot's variables are written only from SMM
    if spec.hotplug_ports and machine.startswith("microvm"):
        machine += ",pcie=on"
    memory: list[str] = []
    if spec.memory_file is not None:
        # Named as QEMU names anonymous RAM, so streams from either kind load into the other.
        backend = ram_id(spec.profile, spec.arch)
        machine += f",memory-backend={backend}"
        share = "on" if spec.memory_shared else "off"
        memory = [
            "-object",
            f"memory-backend-file,id={backend},size={spec.memory},"
            f"mem-path={spec.memory_file.absolute()},share={share}",
        ]
    return [
        "-name", f"guest={spec.name},debug-threads=on",
        "-M", machine,
        "-accel", accel_arg(spec.accel),
        "-cpu", "host" if spec.accel == "kvm" else board.tcg_cpu,
        "-smp", str(spec.cpus),
        "-m", f"{spec.memory // MIB}M",
        "-nodefaults", "-no-user-config", "-display", "none",
        *([] if spec.reboot else ["-no-reboot"]),
        "-sandbox", SANDBOX,
        *memory,
    ]  # fmt: skip


def _process_args(files: RunFiles) -> list[str]:
    console = (
        f"socket,id=console,path={files.console},server=on,wait=off,"
        f"logfile={files.console_log},logappend=on"
    )
    return [
        "-daemonize", "-pidfile", str(files.pidfile),
        # -D keeps QEMU's stderr open in the daemon (otherwise it goes to /dev/null),
        # so qemu.err also says why a running VM stopped.
        "-D", str(files.stderr),
        "-chardev", f"socket,id=qmp,path={files.qmp},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-chardev", console,
        "-serial", "chardev:console",
    ]  # fmt: skip


def _boot_args(spec: MachineSpec) -> list[str]:
    if spec.kernel is None:
        return []
    args = ["-kernel", str(spec.kernel.absolute())]
    if spec.initrd is not None:
        args += ["-initrd", str(spec.initrd.absolute())]
    return [*args, "-append", kernel_cmdline(spec)]


def _disk_args(spec: MachineSpec) -> list[str]:
    disk = spec.disk.absolute()
    io = spec.disk_io or choose_disk_io(disk)
    # auto-read-only (on by default for -drive) reopens the image by its path when a
    # migration hands the disk over and again when the VM takes it back; a confined
    # QEMU can no longer reach that path, so the disk keeps its one descriptor.
    # discard=unmap passes the guest's discards (its root is mounted -o discard) down to
    # the overlay, which punches the clusters out: deleted files give the host its space
    # back; detect-zeroes=unmap does the same for blocks the guest overwrites with zeros.
    # werror=enospc (QEMU's default, said here because the daemon relies on it) stops the
    # guest when the host's disk is full rather than failing its write (daemon/vms/diskfull.py).
    drive = (
        f"file={disk},if=none,id=disk0,format={disk_format(disk)},"
        f"cache={io.cache},aio={io.aio},discard=unmap,detect-zeroes=unmap,"
        f"werror=enospc,rerror=report,file.auto-read-only=off"
    )
    blk = _device(spec, "virtio-blk") + ",drive=disk0"
    if spec.profile == "pc":
        blk += ",bootindex=1"
    args = ["-drive", drive, "-device", blk]
    if spec.seed is not None:
        # Read-only and raw: QEMU never writes it, and two QEMUs (a VM and its snapshot's
        # converter) may open it at once.
        seed = f"file={spec.seed.absolute()},if=none,id=seed0,format=raw,readonly=on"
        args += ["-drive", seed, "-device", _device(spec, "virtio-blk") + ",drive=seed0"]
    if spec.cdrom is not None or spec.cdrom_drive:
        args += _cdrom_args(spec.cdrom)
    return args


def _cdrom_args(medium: Path | None) -> list[str]:
    """A read-only ``ide-cd`` on q35's AHCI, after the disk in the boot order (as Proxmox
    orders them): a blank disk has no boot sector, so SeaBIOS falls through to the CD,
    and once something is installed the disk boots by itself."""
    drive = "if=none,id=cd0,media=cdrom,readonly=on"
    if medium is not None:
        drive = f"file={medium.absolute()},{drive},format=raw"
    return ["-drive", drive, "-device", f"ide-cd,id={CDROM_ID},drive=cd0,bus=ide.0,bootindex=2"]


def _firmware_log_args(files: RunFiles) -> list[str]:
    """The firmware's debug console to ``firmware.log`` (SeaBIOS logs "Booting from ...")."""
    return [
        "-chardev", f"file,id=firmware,path={files.firmware_log}",
        "-device", f"isa-debugcon,iobase={DEBUGCON_PORT},chardev=firmware",
    ]  # fmt: skip


def _network_args(spec: MachineSpec, files: RunFiles) -> list[str]:
    """The NIC on QEMU's user-mode network, directly or through a relay.

    With ``net_relay`` the NIC's backend is a stream socket, and the user network
    (still ``net0``, with its host forwards) shares hub 0 with a second one; QEMU
    listens on both and the relay connects them. QEMU 7.2 warns that this hub has
    no NIC (``RELAY_WARNING``), which is true and harmless. QEMU listens rather
    than connects because its stream server takes a new connection after one
    closes (its client does not reconnect before 8.0), so a relay can be replaced
    while the VM runs.
    """
    user = "user,id=net0" + "".join(f",hostfwd={f.hostfwd()}" for f in spec.ports)
    backend = "nic0" if spec.net_relay else "net0"
    nic = _device(spec, "virtio-net") + f",netdev={backend},mac={spec.mac}"
    if spec.profile == "pc":
        nic += ",romfile="  # no iPXE option ROM: the pc profile boots from disk or CD-ROM
    if not spec.net_relay:
        return ["-netdev", user, "-device", nic]
    stream = "stream,server=on,addr.type=unix"
    return [
        "-netdev", f"{stream},id=nic0,addr.path={files.net_nic}",
        "-device", nic,
        "-netdev", user,
        "-netdev", "hubport,id=hub0net,hubid=0,netdev=net0",
        "-netdev", f"{stream},id=wan0,addr.path={files.net_wan}",
        "-netdev", "hubport,id=hub0wan,hubid=0,netdev=wan0",
    ]  # fmt: skip


def _nic_args(spec: MachineSpec) -> list[str]:
    """One virtio-net per NIC, each on a TAP whose descriptor QEMU inherits."""
    args: list[str] = []
    for nic in spec.nics:
        device = _device(spec, "virtio-net") + f",id={nic.id},mac={nic.mac}"
        if spec.profile == "pc":
            device += ",romfile="
        if nic.fd is None:
            args += ["-device", device]
        else:
            args += [
                "-netdev",
                f"tap,id={nic.id},fd={nic.fd}",
                "-device",
                f"{device},netdev={nic.id}",
            ]
    if spec.user_stub:
        args += ["-netdev", "user,id=net0,restrict=on"]
    return args


def _agent_args(spec: MachineSpec, files: RunFiles) -> list[str]:
    return [
        "-device", _device(spec, "virtio-serial") + ",id=vser0",
        "-chardev", f"socket,id=agent,path={files.agent},server=on,wait=off",
        "-device", f"virtserialport,bus=vser0.0,chardev=agent,name={AGENT_PORT_NAME}",
    ]  # fmt: skip


def _display_args(files: RunFiles) -> list[str]:
    """The standard VGA adapter and a VNC server on a Unix socket, password required.

    ``VGA`` (QEMU's "std" VGA, the Bochs VBE adapter) is what SeaBIOS's text mode,
    OVMF's GOP (QemuVideoDxe) and a Linux guest's vgacon and bochs-drm all drive;
    ``virtio-vga`` needs a virtio-gpu driver in the guest, ``cirrus-vga`` is slower
    and deprecated as a default, ``bochs-display`` has no legacy VGA for BIOS text
    mode. ``-display none`` stays: VNC is an extra display with no window. The
    password is unset until the daemon sets one over QMP (``set_password``), so a
    client reaching the socket cannot get in. The keyboard is q35's built-in i8042
    (PS/2), which firmware and every kernel drive.
    """
    return ["-device", "VGA", "-vnc", f"unix:{files.vnc},password=on"]


def _balloon_args(spec: MachineSpec) -> list[str]:
    """A virtio-balloon (virtio-mmio on microvm and virt, virtio-pci on q35).

    ``free-page-reporting=on``: the guest's virtio_balloon reports free pages in
    blocks of 2 MiB and more (the kernel's ``page_reporting_order``, CONFIG_PAGE_REPORTING,
    built into Debian's amd64, 686 and arm64 kernels) and QEMU discards them
    (MADV_DONTNEED), so memory a guest frees goes back to the host within seconds,
    as libvirt's ``<memballoon freePageReporting='on'>``. ``deflate-on-oom=on``: a
    guest about to kill a process for memory first takes back pages of a balloon
    the daemon inflated, so a floor set too low costs speed rather than a process.
    """
    device = _device(spec, "virtio-balloon")
    return ["-device", f"{device},id={BALLOON_ID},free-page-reporting=on,deflate-on-oom=on"]
