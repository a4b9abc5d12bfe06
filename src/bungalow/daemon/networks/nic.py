"""What the VM side is given for each NIC a VM has on a private network."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from bungalow.daemon.state.records import NetworkRecord, NicRecord


@dataclass(frozen=True)
class Nic:
    """One NIC: plug a TAP into ``bridge`` and give the guest ``mac``; DHCP then hands it
    ``address`` (with the subnet's prefix), ``gateway`` as its router and DNS server,
    and ``domain`` as its search domain. ``index`` orders the VM's NICs (0 first)."""

    network: str
    bridge: str
    mac: str
    address: IPv4Interface
    gateway: IPv4Address
    domain: str
    index: int

    @classmethod
    def of(cls, network: NetworkRecord, nic: NicRecord) -> Nic:
        return cls(
            network=network.name,
            bridge=network.bridge,
            mac=nic.mac,
            address=IPv4Interface(f"{nic.address}/{network.subnet.prefixlen}"),
            gateway=network.gateway.ip,
            domain=network.domain,
            index=nic.index,
        )
