"""Stand-ins for VMs on a network that are real kernel objects: a network namespace per
"guest", joined to the bridge by a veth pair, getting its address with busybox udhcpc."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

#: What udhcpc runs on a lease: the address and the default route, as a guest's DHCP does.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"""


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class Guest:
    """A namespace ``ns`` whose ``eth0`` (MAC ``mac``) is plugged into a bridge."""

    ns: str
    mac: str
    host_end: str

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, *args, check=check)

    def dhcp(self, script: Path) -> str | None:
        """Ask for a lease (udhcpc, 3 tries a second apart); the address it set, or None."""
        self.run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "3", "-T", "1",
                 "-s", str(script))  # fmt: skip
        out = self.run("ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout.split()
        return out[out.index("inet") + 1] if "inet" in out else None

    def ping(self, address: str) -> bool:
        return self.run("busybox", "ping", "-c", "1", "-W", "2", address).returncode == 0


@dataclass
class Guests:
    """Every guest a test made, all removed by :meth:`close`."""

    script: Path
    made: list[Guest] = field(default_factory=list)

    def plug(self, bridge: str) -> Guest:
        tag = secrets.token_hex(3)
        mac = "02:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
        guest = Guest(f"netns-{tag}", mac, f"netv{tag}")
        self.made.append(guest)
        sh("ip", "netns", "add", guest.ns)
        sh("ip", "link", "add", guest.host_end, "type", "veth", "peer", "name", f"netp{tag}")
        sh("ip", "link", "set", f"netp{tag}", "netns", guest.ns)
        guest.run("ip", "link", "set", f"netp{tag}", "name", "eth0", check=True)
        guest.run("ip", "link", "set", "eth0", "address", mac, "up", check=True)
        guest.run("ip", "link", "set", "lo", "up", check=True)
        sh("ip", "link", "set", guest.host_end, "master", bridge, "up")
        return guest

    def close(self) -> None:
        for guest in self.made:
            with contextlib.suppress(subprocess.CalledProcessError):
                sh("ip", "link", "del", guest.host_end)
            with contextlib.suppress(subprocess.CalledProcessError):
                sh("ip", "netns", "del", guest.ns)


def leftovers(prefix: str, table: str, root: Path) -> list[str]:
    """Kernel objects and processes of one daemon still there: its bridges, nft table,
    dnsmasq processes; empty when all is gone."""
    found = [
        line.split()[0]
        for line in sh("ip", "-br", "link").stdout.splitlines()
        if line.startswith(prefix)
    ]
    if f"table inet {table}" in sh("nft", "list", "tables").stdout.splitlines():
        found.append(f"nft table {table}")
    dnsmasqs = sh("pgrep", "-af", f"dnsmasq.*{root}", check=False).stdout.strip()
    return found + ([dnsmasqs] if dnsmasqs else [])
