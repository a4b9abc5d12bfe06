"""Linux bridges through rtnetlink (pyroute2): made with their address and up, found, removed.

Each call opens its own netlink socket and blocks for milliseconds: call from a thread in
async code. STP is off (one bridge per network, no loops), and the bridge forwards at
once (``forward_delay`` 0), as libvirt's ``delay='0'``.
"""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Interface
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

_ENOENT = 2
_ENODEV = 19
_EEXIST = 17


def exists(name: str) -> bool:
    with IPRoute() as ip:
        return bool(ip.link_lookup(ifname=name))


def ensure(name: str, address: IPv4Interface) -> None:
    """Make bridge ``name`` with ``address`` and set it up; whatever already exists is kept
    (idempotent, so adopting after a crash half-way is the same call). Also lets the bridge
    route 127.0.0.0/8 (``route_localnet``), which the DNAT of ports published on 127.0.0.1
    needs, as Docker's does without its userland proxy."""
    with IPRoute() as ip:
        if not ip.link_lookup(ifname=name):
            with contextlib.suppress(NetlinkError):  # made meanwhile: checked below
                ip.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0)
        (index,) = ip.link_lookup(ifname=name)
        have = {
            (a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ip.get_addr(index=index, family=2)
        }
        if (str(address.ip), address.network.prefixlen) not in have:
            try:
                ip.addr(
                    "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
                )
            except NetlinkError as error:
                if error.code != _EEXIST:
                    raise
        # A bridge whose MAC was never set takes its lowest port's, so it would change as
        # TAPs come and go and leave guests' ARP caches pointing at a MAC no longer there.
        # Setting it (to the one it has) pins it, as libvirt does for its bridges.
        (link,) = ip.get_links(index)
        ip.link("set", index=index, address=link.get_attr("IFLA_ADDRESS"), state="up")
    Path(f"/proc/sys/net/ipv4/conf/{name}/route_localnet").write_text("1\n")


def delete(name: str) -> bool:
    """Remove bridge ``name`` (its ports fall off it); False when there was none."""
    with IPRoute() as ip:
        try:
            ip.link("del", ifname=name)
        except NetlinkError as error:
            if error.code in (_ENODEV, _ENOENT):
                return False
            raise
    return True


def named(prefix: str) -> list[str]:
    """Every bridge whose name starts with ``prefix``."""
    with IPRoute() as ip:
        found = []
        for link in ip.get_links():
            name = link.get_attr("IFLA_IFNAME")
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info else None
            if name.startswith(prefix) and kind == "bridge":
                found.append(name)
        return sorted(found)


def enable_ip_forward() -> None:
    """Let the host route between its interfaces (``net.ipv4.ip_forward``), which NAT out of
    a network needs. Never switched back off: other software may rely on it."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
