"""The two sides of bench/peers.py: bungalow's CLI and libvirt's virsh, behind one interface.

Each side boots a VM of the same image on a private network of its own and runs
commands in it through its own agent (bungalow's, or qemu-guest-agent); the
measures in peers.py are written once, against :class:`Side`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from _libvirt import (
    AgentNotConnected,
    DomainSpec,
    domain_pid,
    domain_xml,
    guest_exec,
    guest_exec_start,
    guest_exec_wait,
    guest_write,
    network_xml,
    virsh,
)
from _support import BUNGALOW, BenchFailed, cli

from bungalow.client.http import Client
from bungalow.paths import DataDir

#: How long a guest may take from the command to its agent answering (TCG, busy host).
AGENT_TIMEOUT = 300.0
#: How long systemd may take from there to finishing its boot.
RUNNING_TIMEOUT = 900.0
#: ``systemctl is-system-running``'s words for a boot that has finished.
SETTLED = ("running", "degraded")


@dataclass(frozen=True)
class Booted:
    """Seconds from the command to the agent's first answer, and to the end of ``true``."""

    to_agent: float
    to_command: float


@dataclass(frozen=True)
class Ran:
    """What a command run in a guest gave: its exit status and its output."""

    exit_code: int
    stdout: str
    stderr: str


class Side(Protocol):
    """What peers.py asks of bungalow and of libvirt alike."""

    label: str

    def boot(self, name: str) -> Booted:
        """Boot ``name`` and run ``true`` in it, timed from the command."""
        ...

    def wait_running(self, name: str) -> None:
        """Wait until the guest's systemd says its boot is over (running or degraded)."""
        ...

    def run(self, name: str, argv: Sequence[str], timeout: float = 60) -> Ran: ...

    def put(self, name: str, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` in the guest (mode 0755: binaries and libraries)."""
        ...

    def qemu_pid(self, name: str) -> int: ...

    def remove(self, name: str) -> None: ...


class BungalowSide:
    """bungalow: ``launch --network`` then ``exec -- true``, as its users run it."""

    label = "bungalow"

    def __init__(self, env: Mapping[str, str], image: str, network: str, memory: str) -> None:
        self.env = dict(env)
        self.image = image
        self.network = network
        self.memory = memory

    def boot(self, name: str) -> Booted:
        """``launch`` returns once the agent answered (and bungalowd did its steps after)."""
        started = time.monotonic()
        cli(self.env, "launch", name, "--image", self.image, "--network", self.network,
            "--memory", self.memory)  # fmt: skip
        launched = time.monotonic()
        ran = self.run(name, ["true"])
        finished = time.monotonic()
        if ran.exit_code != 0:
            raise BenchFailed(f"`true` in bungalow's {name} exited {ran.exit_code}: {ran.stderr}")
        return Booted(launched - started, finished - started)

    def wait_running(self, name: str) -> None:
        """``launch --wait services``' wait: bungalowd asks the agent once a second."""
        with Client(DataDir(Path(self.env["BUNGALOW_HOME"])), autostart=False) as client:
            for _event in client.wait_vm(name, "services", RUNNING_TIMEOUT):
                pass

    def run(self, name: str, argv: Sequence[str], timeout: float = 60) -> Ran:
        try:
            result = subprocess.run(
                [BUNGALOW, "exec", name, "--", *argv],
                env=self.env, capture_output=True, text=True, timeout=timeout + 30,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BenchFailed(
                f"`{' '.join(argv)}` in {name} did not end in {timeout:.0f} s"
            ) from None
        if result.returncode == 125:
            raise BenchFailed(f"bungalow exec {name} failed: {result.stderr.strip()}")
        return Ran(result.returncode, result.stdout, result.stderr)

    def put(self, name: str, path: str, data: bytes) -> None:
        with tempfile.NamedTemporaryFile(prefix="peers-", dir="/tmp") as file:
            file.write(data)
            file.flush()
            Path(file.name).chmod(0o755)
            cli(self.env, "cp", file.name, f"{name}:{path}")

    def qemu_pid(self, name: str) -> int:
        return int(json.loads(cli(self.env, "inspect", name))["pid"])

    def remove(self, name: str) -> None:
        cli(self.env, "rm", "--force", name)


class LibvirtSide:
    """libvirt: ``qemu-img create`` and ``virsh create`` of a transient domain, then guest-exec.

    The overlay is made inside the timed span, as ``bungalow launch`` makes its own.
    """

    label = "libvirt"

    def __init__(self, workdir: Path, network: str, guest: DomainSpec) -> None:
        """``guest`` is the template: its disk is the image's (each VM gets an overlay
        on it), ``{name}`` in its command line becomes the VM's name."""
        self.workdir = workdir
        self.network = network
        self.guest = guest

    def create_network(self, bridge: str, subnet: ipaddress.IPv4Network) -> None:
        path = self.workdir / f"{self.network}.xml"
        path.write_text(network_xml(self.network, bridge, subnet))
        virsh("net-create", str(path))

    def boot(self, name: str) -> Booted:
        """The agent's first answer is guest-exec taking ``true``."""
        disk = self.workdir / f"{name}.qcow2"
        spec = dataclasses.replace(
            self.guest,
            name=name,
            disk=disk,
            console_log=self.workdir / f"{name}.console",
            network=self.network,
            cmdline=self.guest.cmdline.replace("{name}", name),
        )
        xml = self.workdir / f"{name}.xml"
        started = time.monotonic()
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
             str(self.guest.disk), str(disk), "4G"],
            check=True,
        )  # fmt: skip
        os.chown(disk, *self.guest.user)  # QEMU runs as libvirt-qemu, nothing relabels
        xml.write_text(domain_xml(spec))
        virsh("create", str(xml))
        pid = self._start_true(name)
        answered = time.monotonic()
        status = guest_exec_wait(name, pid, ["true"], 60)
        if status.exit_code != 0:
            raise BenchFailed(f"`true` in libvirt's {name} exited {status.exit_code}")
        return Booted(answered - started, time.monotonic() - started)

    def _start_true(self, name: str) -> int:
        """Poll guest-exec of ``true`` until the agent takes it; its PID in the guest."""
        deadline = time.monotonic() + AGENT_TIMEOUT
        while True:
            try:
                return guest_exec_start(name, ["true"])
            except AgentNotConnected:
                if time.monotonic() > deadline:
                    raise BenchFailed(
                        f"qemu-guest-agent in libvirt's {name} did not answer within "
                        f"{AGENT_TIMEOUT:.0f} s"
                    ) from None
                time.sleep(0.1)

    def wait_running(self, name: str) -> None:
        """``systemctl is-system-running`` through qemu-guest-agent, once a second."""
        deadline = time.monotonic() + RUNNING_TIMEOUT
        while True:
            state = self.run(name, ["systemctl", "is-system-running"]).stdout.strip()
            if state in SETTLED:
                return
            if state in ("maintenance", "stopping", "offline") or time.monotonic() > deadline:
                raise BenchFailed(f"libvirt's {name} never finished booting (systemd: {state})")
            time.sleep(1.0)

    def run(self, name: str, argv: Sequence[str], timeout: float = 60) -> Ran:
        status = guest_exec(name, argv, timeout)
        return Ran(
            status.exit_code if status.exit_code is not None else -1,
            status.stdout.decode(errors="replace"),
            status.stderr.decode(errors="replace"),
        )

    def put(self, name: str, path: str, data: bytes) -> None:
        guest_write(name, path, data)
        self.run(name, ["chmod", "0755", path])

    def qemu_pid(self, name: str) -> int:
        return domain_pid(name)

    def remove(self, name: str) -> None:
        virsh("destroy", name)
        for suffix in (".qcow2", ".xml", ".console"):
            (self.workdir / f"{name}{suffix}").unlink(missing_ok=True)
