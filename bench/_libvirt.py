"""libvirt for a bench: Debian's libvirtd started without systemd, its networks, domains, agent.

:class:`LibvirtHost` is a block in which a private libvirtd (and the virtlogd it
logs QEMU's output through) runs, started as a systemd-less Debian host would
start them, and after which nothing of libvirt's is left: no domain, network,
bridge, dnsmasq, daemon, cgroup or run directory. What it takes care of, each
found by trying libvirt 9.0 (Debian 12) on a host with no systemd and no udev:

- libvirtd is started by hand, ``--daemon`` with a pid file and a config file
  in the bench's scratch directory (so that ``_support.clear`` finds it); its
  sockets are the usual /run/libvirt ones, as ``virsh -c qemu:///system`` expects.
- The ``default`` network Debian defines, and any domain or pool marked
  autostart, are not started: libvirt autostarts once per host boot and skips it
  when ``<state dir>/autostarted`` exists, which the bench writes first.
- /dev/kvm: libvirt caches QEMU's capabilities and throws the cache away on every
  look-up when KVM was there at probing time but is not usable now by the QEMU
  user (``libvirt-qemu``, group ``kvm``). Without udev, /dev/kvm stays root's
  alone (0600), and one ``virsh create`` re-probes QEMU 19 times (76 s). The bench
  gives it the owner and mode Debian's udev rules give it (root:kvm 0660) and
  puts back what it found afterwards. Domains are still ``type='qemu'`` (TCG).
- Image files are not relabelled: the domains carry a static DAC label with
  ``relabel='no'`` so that libvirt never chowns the shared image store; QEMU still
  runs as ``libvirt-qemu``, and the bench checks that it can read what it boots.
- cgroup v1 without systemd: libvirt makes ``machine/`` in every controller's
  tree for its VMs; the bench removes those it made.

libvirt's side is driven the way its users drive it: ``virsh`` commands and
qemu-guest-agent through ``virsh qemu-agent-command``.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from _support import KILL_WAIT_SECONDS, BenchFailed, processes_naming, terminate

URI = "qemu:///system"
#: What the bench installs when libvirt is missing (``--no-install-recommends``).
DEBIAN_PACKAGES = ("libvirt-daemon-system", "libvirt-clients", "iperf3")
#: A program of each package, to tell whether it is installed.
PROGRAMS = ("libvirtd", "virsh", "iperf3")
RUN_DIR = Path("/run/libvirt")
SOCKET = RUN_DIR / "libvirt-sock"
#: libvirt's drivers that autostart things; each skips that when its marker exists.
AUTOSTART_DRIVERS = ("qemu", "network", "storage")
QEMU_USER = "libvirt-qemu"
KVM_DEVICE = Path("/dev/kvm")
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: libvirt's own files about a domain or network that outlive it.
DOMAIN_LOG_DIR = Path("/var/log/libvirt/qemu")
DNSMASQ_DIR = Path("/var/lib/libvirt/dnsmasq")
START_SECONDS = 30.0
VIRSH_TIMEOUT = 120.0
#: One guest-file-write's payload; base64 of it is one argument of virsh, and the kernel
#: refuses a single argument over 128 KiB (MAX_ARG_STRLEN).
WRITE_CHUNK = 64 * 1024


def ensure_installed() -> None:
    """Install libvirt and iperf3 from Debian (``apt-get``, no recommends) if one is missing."""
    if all(shutil.which(program) for program in PROGRAMS):
        return
    print(f"installing {' '.join(DEBIAN_PACKAGES)} from Debian", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *DEBIAN_PACKAGES],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-1:] or ["no message"]
            raise BenchFailed(f"`{' '.join(argv)}` failed: {tail[0]}")


# -- what libvirt is given ----------------------------------------------------------------------


@dataclass(frozen=True)
class DomainSpec:
    """One transient domain booted the way bungalow boots its VMs: kernel, initramfs, overlay.

    ``memory_mib`` in MiB; ``user`` the (uid, gid) QEMU runs as; ``console_log`` the
    file the guest's serial port is written to.
    """

    name: str
    memory_mib: int
    cpus: int
    kernel: Path
    initrd: Path
    cmdline: str
    disk: Path
    network: str
    console_log: Path
    user: tuple[int, int]
    #: TCG's translation cache in MiB (libvirt's ``<tcg><tb-cache>``); None for QEMU's 1 GiB.
    tb_cache_mib: int | None = None
    #: Leave in the devices libvirt adds unless told not to (a USB controller, a
    #: virtio balloon): libvirt as its users get it, for bench/overhead.py.
    defaults: bool = False


def domain_xml(spec: DomainSpec) -> str:
    """The ``<domain type='qemu'>`` of ``spec``: q35 (libvirt 9.0 has no microvm), lean.

    Only what the guest uses: a virtio disk, a virtio NIC on ``spec.network``, the
    serial port, qemu-guest-agent's channel, a virtio RNG (bungalow gives its
    guests one too); no USB controller and no balloon, which libvirt adds unless
    told not to (``spec.defaults`` lets it). This is libvirt at its leanest, the
    stricter side to compare with.
    """
    domain = ET.Element("domain", type="qemu")
    ET.SubElement(domain, "name").text = spec.name
    ET.SubElement(domain, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(domain, "vcpu").text = str(spec.cpus)
    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="q35").text = "hvm"
    ET.SubElement(os_, "kernel").text = str(spec.kernel)
    ET.SubElement(os_, "initrd").text = str(spec.initrd)
    ET.SubElement(os_, "cmdline").text = spec.cmdline
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")
    if spec.tb_cache_mib is not None:
        tcg = ET.SubElement(features, "tcg")
        ET.SubElement(tcg, "tb-cache", unit="MiB").text = str(spec.tb_cache_mib)
    ET.SubElement(domain, "cpu", mode="maximum")
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(domain, event).text = "destroy"
    label = ET.SubElement(domain, "seclabel", type="static", model="dac", relabel="no")
    ET.SubElement(label, "label").text = f"+{spec.user[0]}:+{spec.user[1]}"
    devices = ET.SubElement(domain, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    # The overlay as bungalow opens its own (qemu/argv.py): O_DIRECT, native AIO, discards.
    ET.SubElement(disk, "driver", name="qemu", type="qcow2", cache="none", io="native",
                  discard="unmap")  # fmt: skip
    ET.SubElement(disk, "source", file=str(spec.disk))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    nic = ET.SubElement(devices, "interface", type="network")
    ET.SubElement(nic, "source", network=spec.network)
    ET.SubElement(nic, "model", type="virtio")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(spec.console_log))
    channel = ET.SubElement(devices, "channel", type="unix")
    ET.SubElement(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    if not spec.defaults:
        ET.SubElement(devices, "controller", type="usb", model="none")
        ET.SubElement(devices, "memballoon", model="none")
    rng = ET.SubElement(devices, "rng", model="virtio")
    ET.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    return ET.tostring(domain, encoding="unicode")


def network_xml(name: str, bridge: str, subnet: ipaddress.IPv4Network) -> str:
    """A libvirt ``<network>``: its own bridge, its dnsmasq for DHCP and DNS, no firewall rules.

    ``forward mode='open'`` is libvirt's routed network without the iptables rules
    it would otherwise add (and, in 9.0, never remove: its LIBVIRT_* chains stay in
    the host's ip tables). VM-to-VM traffic does not leave the bridge either way.
    """
    hosts = list(subnet.hosts())
    if len(hosts) < 3:
        raise ValueError(f"{subnet} has too few addresses for a gateway and two VMs")
    network = ET.Element("network")
    ET.SubElement(network, "name").text = name
    ET.SubElement(network, "forward", mode="open")
    ET.SubElement(network, "bridge", name=bridge, stp="off", delay="0")
    ip = ET.SubElement(network, "ip", address=str(hosts[0]), prefix=str(subnet.prefixlen))
    ET.SubElement(ET.SubElement(ip, "dhcp"), "range", start=str(hosts[1]), end=str(hosts[-1]))
    return ET.tostring(network, encoding="unicode")


def qemu_identity() -> tuple[int, int]:
    """The (uid, gid) Debian's libvirt runs QEMU as: ``libvirt-qemu`` and its group ``kvm``."""
    try:
        user = pwd.getpwnam(QEMU_USER)
    except KeyError:
        raise BenchFailed(
            f"there is no user {QEMU_USER}; is libvirt-daemon-system installed?"
        ) from None
    return user.pw_uid, user.pw_gid


def check_readable(paths: Sequence[Path], user: tuple[int, int]) -> None:
    """BenchFailed unless QEMU, as ``user``, can read every path (parents traversed)."""
    uid, gid = user
    for path in paths:
        result = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "test", "-r",
             str(path)],
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise BenchFailed(
                f"libvirt's QEMU runs as {QEMU_USER}, which cannot read {path}; keep the image "
                "store where other users can read it (set BUNGALOW_IMAGES)"
            )


# -- virsh and qemu-guest-agent -----------------------------------------------------------------


def virsh(*args: str, timeout: float = VIRSH_TIMEOUT, check: bool = True) -> str:
    """The output of ``virsh -c qemu:///system ARGS``; BenchFailed with its error if ``check``."""
    try:
        result = subprocess.run(
            ["virsh", "-q", "-c", URI, *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise BenchFailed(f"virsh {args[0]} did not finish within {timeout:.0f} s") from None
    if check and result.returncode != 0:
        raise BenchFailed(f"virsh {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout if result.returncode == 0 else ""


class AgentNotConnected(Exception):
    """qemu-guest-agent does not answer yet (not started, or libvirt not yet told)."""


def agent_command(
    domain: str, execute: str, arguments: Mapping[str, object] | None = None, timeout: float = 30
) -> object:
    """The ``return`` of one qemu-guest-agent command, sent through libvirt.

    Raises AgentNotConnected while the agent is not there, BenchFailed for any
    other refusal (the agent's error is in the message).
    """
    payload = json.dumps({"execute": execute, "arguments": dict(arguments or {})})
    result = subprocess.run(
        ["virsh", "-q", "-c", URI, "qemu-agent-command", domain, "--timeout", str(int(timeout)),
         payload],
        capture_output=True, text=True, timeout=timeout + VIRSH_TIMEOUT,
    )  # fmt: skip
    if result.returncode != 0:
        message = result.stderr.strip()
        if "not connected" in message or "not responding" in message:
            raise AgentNotConnected(message)
        raise BenchFailed(f"qemu-guest-agent's {execute} in {domain} failed: {message}")
    return parse_agent_reply(result.stdout)


def parse_agent_reply(text: str) -> object:
    """The ``return`` member of qemu-guest-agent's JSON reply as virsh prints it."""
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        raise BenchFailed(f"qemu-guest-agent's reply is not JSON: {text[:200]!r}") from None
    if not isinstance(reply, dict) or "return" not in reply:
        raise BenchFailed(f"qemu-guest-agent's reply has no return: {text[:200]!r}")
    return reply["return"]


@dataclass(frozen=True)
class ExecStatus:
    """``guest-exec-status``: whether it ended, its exit code, its output (decoded)."""

    exited: bool
    exit_code: int | None
    stdout: bytes
    stderr: bytes


def parse_exec_status(reply: object) -> ExecStatus:
    """The answer to ``guest-exec-status``; a signal's death is shown as 128+N, as a shell does."""
    if not isinstance(reply, dict):
        raise BenchFailed(f"guest-exec-status answered {reply!r}")
    code = reply.get("exitcode")
    if reply.get("signal") is not None:
        code = 128 + int(reply["signal"])
    return ExecStatus(
        exited=bool(reply.get("exited")),
        exit_code=None if code is None else int(code),
        stdout=base64.b64decode(reply.get("out-data", "")),
        stderr=base64.b64decode(reply.get("err-data", "")),
    )


def guest_exec(domain: str, argv: Sequence[str], timeout: float = 60) -> ExecStatus:
    """Run ``argv`` in the guest through qemu-guest-agent and wait for its end, output captured."""
    return guest_exec_wait(domain, guest_exec_start(domain, argv), argv, timeout)


def guest_exec_wait(domain: str, pid: int, argv: Sequence[str], timeout: float) -> ExecStatus:
    """Poll ``guest-exec-status`` of the command ``argv`` started as ``pid`` until it ends."""
    deadline = time.monotonic() + timeout
    while True:
        status = parse_exec_status(agent_command(domain, "guest-exec-status", {"pid": pid}))
        if status.exited:
            return status
        if time.monotonic() > deadline:
            raise BenchFailed(f"`{' '.join(argv)}` in {domain} did not end within {timeout:.0f} s")
        time.sleep(0.05)


def guest_exec_start(domain: str, argv: Sequence[str]) -> int:
    """Start ``argv`` in the guest (``guest-exec``); its PID there."""
    arguments = {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
    reply = agent_command(domain, "guest-exec", arguments)
    if not isinstance(reply, dict) or not isinstance(reply.get("pid"), int):
        raise BenchFailed(f"guest-exec in {domain} answered {reply!r}")
    return int(reply["pid"])


def guest_write(domain: str, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` in the guest (guest-file-open/write/close), in chunks."""
    handle = agent_command(domain, "guest-file-open", {"path": path, "mode": "w"})
    try:
        for offset in range(0, len(data), WRITE_CHUNK):
            chunk = base64.b64encode(data[offset : offset + WRITE_CHUNK]).decode()
            agent_command(domain, "guest-file-write", {"handle": handle, "buf-b64": chunk})
    finally:
        agent_command(domain, "guest-file-close", {"handle": handle})


def domain_pid(name: str) -> int:
    """The PID of a running domain's QEMU, from libvirt's pid file."""
    return int((RUN_DIR / "qemu" / f"{name}.pid").read_text().strip())


# -- the private libvirtd -----------------------------------------------------------------------


class LibvirtHost:
    """A libvirtd of the bench's own in ``workdir``; ``with`` it, and libvirt leaves nothing.

    Domains and networks the bench makes are named with ``prefix``, their bridges
    with ``bridge_prefix``; those alone are destroyed at the end, before the daemons
    stop, and what a libvirtd that died first left of them (its networks' dnsmasq,
    their bridges) is removed after.
    """

    def __init__(self, workdir: Path, prefix: str, bridge_prefix: str) -> None:
        self.workdir = workdir
        self.prefix = prefix
        self.bridge_prefix = bridge_prefix
        self._ran_before = RUN_DIR.exists()
        self._kvm_mode: tuple[int, int, int] | None = None
        self._cgroups_before = set(_machine_cgroups())

    def __enter__(self) -> LibvirtHost:
        if running := _foreign_daemons():
            pids = " ".join(str(pid) for pid in running)
            raise BenchFailed(
                f"libvirtd or virtlogd is already running (PIDs {pids}), started by the system"
                " or left by a bench run that was killed; stop it (kill "
                f"{pids}) and run again: the bench starts its own"
            )
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._open_kvm_to_group()
        for driver in AUTOSTART_DRIVERS:
            state = RUN_DIR / driver
            state.mkdir(parents=True, exist_ok=True)
            (state / "autostarted").touch()
        log = self.workdir / "libvirtd.log"
        (self.workdir / "virtlogd.conf").write_text(
            f'log_outputs = "3:file:{self.workdir}/virtlogd.log"\n'
        )
        (self.workdir / "libvirtd.conf").write_text(
            f'auth_unix_ro = "none"\nauth_unix_rw = "none"\nlog_outputs = "3:file:{log}"\n'
        )
        for daemon in ("virtlogd", "libvirtd"):
            subprocess.run(
                [daemon, "--daemon", "--pid-file", str(self.workdir / f"{daemon}.pid"),
                 "--config", str(self.workdir / f"{daemon}.conf")],
                check=True, timeout=START_SECONDS,
            )  # fmt: skip
        _wait_for_socket(SOCKET, START_SECONDS)
        virsh("version")

    def _open_kvm_to_group(self) -> None:
        """Give /dev/kvm Debian's udev owner and mode (root:kvm 0660); see the module's doc."""
        if not KVM_DEVICE.exists():
            return
        info = KVM_DEVICE.stat()
        kvm_gid = grp.getgrnam("kvm").gr_gid
        if info.st_gid == kvm_gid and info.st_mode & 0o060 == 0o060:
            return
        self._kvm_mode = (info.st_uid, info.st_gid, info.st_mode & 0o7777)
        os.chown(KVM_DEVICE, 0, kvm_gid)
        os.chmod(KVM_DEVICE, 0o660)

    def close(self) -> None:
        """Destroy the bench's domains and networks, stop the daemons, undo the host changes."""
        try:
            if SOCKET.exists() and self._daemon_pids():
                for name in virsh("list", "--name", check=False).split():
                    if name.startswith(self.prefix):
                        virsh("destroy", name, check=False)
                for name in virsh("net-list", "--name", check=False).split():
                    if name.startswith(self.prefix):
                        virsh("net-destroy", name, check=False)
            self._stop_daemons()
        finally:
            self._tidy_host()

    def _daemon_pids(self) -> dict[int, list[bytes]]:
        return processes_naming(self.workdir)

    def _stop_daemons(self) -> None:
        # libvirtd first: it keeps virtlogd busy with its QEMUs' output.
        for daemon in (b"libvirtd", b"virtlogd"):
            pids = [pid for pid, args in self._daemon_pids().items() if daemon in args[0]]
            terminate(pids, KILL_WAIT_SECONDS)

    def _tidy_host(self) -> None:
        for pid in _dnsmasq_of(self.prefix):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for bridge in Path("/sys/class/net").glob(f"{self.bridge_prefix}*"):
            subprocess.run(["ip", "link", "del", bridge.name], check=False)
        for path in DNSMASQ_DIR.glob(f"{self.prefix}*") if DNSMASQ_DIR.is_dir() else ():
            path.unlink(missing_ok=True)
        for path in DOMAIN_LOG_DIR.glob(f"{self.prefix}*.log") if DOMAIN_LOG_DIR.is_dir() else ():
            path.unlink(missing_ok=True)
        for group in sorted(set(_machine_cgroups()) - self._cgroups_before, reverse=True):
            _remove_tree(group)
        if not self._ran_before:
            shutil.rmtree(RUN_DIR, ignore_errors=True)
        if self._kvm_mode is not None:
            uid, gid, mode = self._kvm_mode
            os.chown(KVM_DEVICE, uid, gid)
            os.chmod(KVM_DEVICE, mode)
            self._kvm_mode = None


def _foreign_daemons() -> list[int]:
    """libvirtd and virtlogd processes running now (none of this bench's yet)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(os.readlink(entry / "exe")).name in ("libvirtd", "virtlogd"):
                    found.append(int(entry.name))
    return found


def _dnsmasq_of(prefix: str) -> list[int]:
    """The dnsmasq processes libvirt started for networks named ``prefix...``."""
    conf = f"--conf-file={DNSMASQ_DIR}/{prefix}".encode()
    return [
        pid
        for pid, args in processes_naming(DNSMASQ_DIR).items()
        if any(arg.startswith(conf) for arg in args)
    ]


def _wait_for_socket(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket(socket.AF_UNIX) as sock, contextlib.suppress(OSError):
            sock.connect(str(path))
            return
        if time.monotonic() > deadline:
            raise BenchFailed(f"libvirtd did not listen on {path} within {seconds:.0f} s")
        time.sleep(0.05)


def _machine_cgroups() -> Iterator[Path]:
    """libvirt's ``machine`` partition in each cgroup tree (v1: one per controller; v2: one)."""
    yield from (p for p in CGROUP_ROOT.glob("*/machine") if p.is_dir())
    if (CGROUP_ROOT / "machine").is_dir():
        yield CGROUP_ROOT / "machine"


def _remove_tree(group: Path) -> None:
    """Remove an emptied control group and its children, deepest first; retry while busy."""
    children = sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    for path in [*children, group]:
        while True:
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise BenchFailed(
                        f"libvirt's cgroup {path} is still busy; remove it by hand"
                    ) from exc
                time.sleep(0.1)
