"""bungalow's own nft table: rendered whole from data and replaced in one transaction.

One table per daemon, family ``inet`` (host/net/naming.py names it); nothing else on
the host is touched (libvirt's lesson: the shared ``filter`` table belongs to
iptables). :func:`render` is a pure function of the networks and the published
ports, and :func:`apply` hands its text to ``nft -f -``, which replaces the table
atomically: there is never a moment with half the rules.

The rules only judge traffic that touches this daemon's bridges (``bgl<tag>*``), and
no chain has a policy of drop:

- input: DHCP and DNS from our bridges to the host's dnsmasq are accepted;
- forward: a network's own traffic is accepted (with ``br_netfilter`` loaded, as it is
  here and on every Docker host, frames bridged between two VMs of one network pass
  this hook too, with the bridge as both interfaces); traffic between two networks is
  rejected (the host is the only router between them; a VM on both networks talks to
  each directly and needs no rule); traffic out of a network is accepted, and into one
  only when it answers (established, related) or was published (DNAT);
- nat: each subnet is masqueraded out of it; published ports are DNAT'd to a VM's
  address in prerouting (from elsewhere) and output (from the host itself, 127.0.0.1
  included, which needs ``route_localnet`` on the bridge and masquerading 127.0.0.0/8
  out of it, as Docker does without its userland proxy).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from bungalow.errors import BungalowError

_ANY = IPv4Address("0.0.0.0")


@dataclass(frozen=True)
class BridgedNetwork:
    """A network as the firewall sees it."""

    bridge: str
    subnet: IPv4Network


@dataclass(frozen=True)
class Published:
    """A port published on the host and forwarded to a VM's address on a network.

    ``host_addr`` 0.0.0.0 means every address of the host.
    """

    host_addr: IPv4Address
    host_port: int
    protocol: Literal["tcp", "udp"]
    guest: IPv4Address
    guest_port: int

    def _match(self) -> str:
        where = "fib daddr type local" if self.host_addr == _ANY else f"ip daddr {self.host_addr}"
        return f"{where} {self.protocol} dport {self.host_port}"

    def dnat(self) -> str:
        return f"{self._match()} dnat ip to {self.guest}:{self.guest_port}"

    @property
    def from_elsewhere(self) -> bool:
        """Whether other hosts can reach it (127.0.0.1 is the host's alone)."""
        return not self.host_addr.is_loopback


def render(
    table: str, prefix: str, networks: list[BridgedNetwork], published: list[Published]
) -> str:
    """The nft script that replaces table ``inet table`` with the rules for ``networks``
    (bridges named ``prefix``...) and ``published`` ports, or deletes it when there are
    no networks. Pure: same data, same text."""
    # "add" then "delete" in one script: the table goes whether or not it existed.
    head = f"add table inet {table}\ndelete table inet {table}\n"
    if not networks:
        return head
    ours = f'"{prefix}*"'
    lines = [
        f"table inet {table} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f"    iifname {ours} udp dport {{ 53, 67 }} accept",
        f"    iifname {ours} tcp dport 53 accept",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    for net in networks:
        lines.append(f'    iifname "{net.bridge}" oifname "{net.bridge}" accept')
    lines += [
        f"    iifname {ours} oifname {ours} reject with icmpx admin-prohibited",
        f"    iifname {ours} accept",
        f"    oifname {ours} ct state established,related accept",
        f"    oifname {ours} ct status dnat accept",
        f"    oifname {ours} reject with icmpx admin-prohibited",
        "  }",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
    ]
    lines += [f"    {port.dnat()}" for port in published if port.from_elsewhere]
    lines += [
        "  }",
        "  chain output {",
        # nft 1.0.6 names no priority for the output hook in an inet table: dstnat's is -100.
        "    type nat hook output priority -100; policy accept;",
    ]
    lines += [f"    {port.dnat()}" for port in published]
    lines += [
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f"    oifname {ours} ip saddr 127.0.0.0/8 masquerade",
        # Multicast and broadcast are not NAT'd (libvirt's two "return" rules).
        "    ip daddr { 224.0.0.0/24, 255.255.255.255 } return",
    ]
    for net in networks:
        lines.append(f"    ip saddr {net.subnet} ip daddr != {net.subnet} masquerade")
    lines += ["  }", "}"]
    return head + "\n".join(lines) + "\n"


def nft(script: str) -> str:
    """Run ``script`` through ``nft -f -`` in one transaction; its output.
    BungalowError with nft's own words when it refuses."""
    try:
        result = subprocess.run(
            ["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise BungalowError("nft is not installed; install Debian's nftables package.") from None
    if result.returncode != 0:
        raise BungalowError(f"nft refused bungalow's rules: {result.stderr.strip()}")
    return result.stdout


def apply(script: str) -> None:
    """Apply a script :func:`render` made."""
    nft(script)


def tables() -> list[tuple[str, str]]:
    """Every nft table on the host, as (family, name)."""
    result = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True)
    if result.returncode != 0:
        raise BungalowError(f"nft could not list the tables: {result.stderr.strip()}")
    found = []
    for item in json.loads(result.stdout)["nftables"]:
        if "table" in item:
            found.append((item["table"]["family"], item["table"]["name"]))
    return found


def exists(table: str) -> bool:
    return ("inet", table) in tables()


def delete(table: str) -> None:
    """Remove ``inet table`` if it exists."""
    nft(f"add table inet {table}\ndelete table inet {table}\n")
