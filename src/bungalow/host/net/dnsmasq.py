"""One dnsmasq per network: DHCP with an address per NIC, and DNS for the VMs' names.

The argv is a pure function of the network (:func:`argv`), so tests read it and a
daemon after a crash rebuilds the same one. dnsmasq daemonizes itself and names its
pidfile on its command line (``--pid-file=<run>/dnsmasq.pid``), so host/processes.py's
census finds it again from /proc after bungalowd is SIGKILLed.

What it serves comes from two directories dnsmasq watches with inotify
(``--dhcp-hostsdir``, ``--hostsdir``), one file per NIC written by the daemon from
the database: a new or changed file is read at once; a removal needs a SIGHUP, and
the NIC's lease is dropped with ``dhcp_release`` (dnsmasq-utils) so its address can
go to another MAC at once. Leases are infinite: an address is the VM's for as long as
its NIC exists (Multipass does the same). ``id:*`` matches a NIC by MAC alone, ignoring
the DHCP client id (systemd-networkd's DUID would make clones collide).

dnsmasq binds only the network's bridge (``--bind-interfaces``, ``--interface``,
``--listen-address``), never the host's port 53 elsewhere, and reads no
/etc/dnsmasq.conf and no /etc/hosts. It runs as root, as Incus runs it: the data
directory it reads is the daemon's, mode 0700.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from bungalow.errors import BungalowError
from bungalow.host import processes
from bungalow.host.processes import HostProcess

_PROGRAM = "dnsmasq"


@dataclass(frozen=True)
class DnsmasqFiles:
    """The files of one network's dnsmasq, all inside the network's directory."""

    root: Path

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "dnsmasq.pid"

    @property
    def leases(self) -> Path:
        return self.root / "leases"

    @property
    def dhcp_hosts(self) -> Path:
        return self.root / "hosts.d"

    @property
    def dns_hosts(self) -> Path:
        return self.root / "dns.d"

    @property
    def servers(self) -> Path:
        """``--servers-file``: where other networks' names are asked (re-read on SIGHUP)."""
        return self.root / "servers"

    @property
    def log(self) -> Path:
        return self.root / "dnsmasq.log"

    def ensure(self) -> None:
        for path in (self.root, self.run_dir, self.dhcp_hosts, self.dns_hosts):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)


@dataclass(frozen=True)
class HostEntry:
    """One NIC as dnsmasq knows it: ``key`` names its files (the VM's id)."""

    key: str
    mac: str
    address: IPv4Address
    name: str

    def dhcp_line(self) -> str:
        """``--dhcp-hostsdir`` syntax: MAC, any client id, address, name, infinite lease."""
        return f"{self.mac},id:*,{self.address},{self.name},infinite\n"

    def dns_line(self, domain: str) -> str:
        """``--hostsdir`` syntax (/etc/hosts): the address, the full name, the short one."""
        return f"{self.address} {self.name}.{domain} {self.name}\n"


def argv(bridge: str, gateway: IPv4Interface, domain: str, files: DnsmasqFiles) -> list[str]:
    """dnsmasq's command line for the network on ``bridge`` whose host address is
    ``gateway``, serving names under ``domain``. Addresses are handed only to the MACs
    in ``hosts.d`` (a ``static`` range)."""
    subnet = gateway.network
    return [
        _PROGRAM,
        "--conf-file=/dev/null",
        f"--pid-file={files.pidfile}",
        "--user=root",
        "--group=root",
        "--strict-order",
        "--bind-interfaces",
        f"--interface={bridge}",
        "--except-interface=lo",
        f"--listen-address={gateway.ip}",
        "--no-hosts",
        f"--dhcp-range={subnet.network_address},static,{subnet.netmask},infinite",
        "--dhcp-no-override",
        "--dhcp-authoritative",
        f"--dhcp-leasefile={files.leases}",
        f"--dhcp-hostsdir={files.dhcp_hosts}",
        f"--hostsdir={files.dns_hosts}",
        f"--domain={domain}",
        f"--local=/{domain}/",
        "--expand-hosts",
        f"--dhcp-option=option:domain-search,{domain}",
        f"--servers-file={files.servers}",
        f"--log-facility={files.log}",
    ]


def running(files: DnsmasqFiles) -> HostProcess | None:
    """The dnsmasq serving this network, found in /proc by its pidfile; None if none runs."""
    for process in processes.under(files.run_dir):
        if process.program == _PROGRAM and process.pidfile == files.pidfile:
            return process
    return None


def start(command: list[str], files: DnsmasqFiles) -> HostProcess:
    """Start dnsmasq (it daemonizes once it has bound its sockets) and return it;
    BungalowError with dnsmasq's own words when it cannot start."""
    files.ensure()
    files.leases.touch(mode=0o600)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    process = running(files)
    processes.reap_exited_children(_PROGRAM, keep=process.pid if process else 0)
    if result.returncode != 0 or process is None:
        words = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise BungalowError(f"dnsmasq for {files.root.name} did not start: {words}")
    return process


def stop(files: DnsmasqFiles) -> list[HostProcess]:
    """End the network's dnsmasq (and anything else naming a pidfile in its run directory)."""
    return processes.end_all(files.run_dir, timeout=2.0)


def reload(files: DnsmasqFiles) -> None:
    """SIGHUP the network's dnsmasq: it reads its host directories again, forgetting
    entries whose files are gone, and clears its cache."""
    process = running(files)
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGHUP)


def write_entries(files: DnsmasqFiles, domain: str, entries: list[HostEntry]) -> bool:
    """Make both host directories hold exactly ``entries``; True when a file was removed
    (dnsmasq needs a SIGHUP to forget it). Each file is written under a dot name, which
    dnsmasq's inotify ignores, and renamed into place."""
    files.ensure()
    removed = False
    for directory, lines in (
        (files.dhcp_hosts, [entry.dhcp_line() for entry in entries]),
        (files.dns_hosts, [entry.dns_line(domain) for entry in entries]),
    ):
        wanted = {entry.key: line for entry, line in zip(entries, lines, strict=True)}
        for path in directory.iterdir():
            if path.name not in wanted:
                path.unlink()
                removed = True
        for key, text in wanted.items():
            path = directory / key
            with contextlib.suppress(FileNotFoundError):
                if path.read_text() == text:
                    continue
            temporary = directory / f".{key}.new"
            temporary.write_text(text)
            temporary.replace(path)
    return removed


def servers_text(peers: list[tuple[str, IPv4Address]]) -> str:
    """``--servers-file`` syntax: ``server=/<domain>/<gateway>`` for each (domain,
    gateway) of another network, sorted, so its names are asked of that network's dnsmasq."""
    return "".join(f"server=/{domain}/{gateway}\n" for domain, gateway in sorted(peers))


def write_servers(files: DnsmasqFiles, text: str) -> bool:
    """Make the servers file say ``text`` (written under a dot name, then renamed);
    True when it changed, and dnsmasq needs a SIGHUP to read it."""
    files.ensure()
    with contextlib.suppress(FileNotFoundError):
        if files.servers.read_text() == text:
            return False
    temporary = files.root / f".servers.{threading.get_ident()}.new"
    temporary.write_text(text)
    temporary.replace(files.servers)
    return True


@dataclass(frozen=True)
class Lease:
    """One line of dnsmasq's lease file."""

    mac: str
    address: IPv4Address
    hostname: str
    expires: int

    @classmethod
    def parse(cls, line: str) -> Lease | None:
        parts = line.split()
        if len(parts) < 4:
            return None
        try:
            return cls(parts[1].lower(), IPv4Address(parts[2]), parts[3], int(parts[0]))
        except ValueError:
            return None


def leases(files: DnsmasqFiles) -> list[Lease]:
    """The leases dnsmasq has written (a lease's expiry 0 is infinite)."""
    try:
        text = files.leases.read_text()
    except FileNotFoundError:
        return []
    return [lease for line in text.splitlines() if (lease := Lease.parse(line))]


def release(bridge: str, lease: Lease) -> None:
    """Drop ``lease`` in the running dnsmasq (``dhcp_release`` sends it a DHCPRELEASE on
    the client's behalf), so its address can go to another MAC at once."""
    subprocess.run(
        ["dhcp_release", bridge, str(lease.address), lease.mac],
        capture_output=True,
        check=False,
    )
