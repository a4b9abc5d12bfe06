"""A VM's NICs on private networks, as the VM service sees them.

The networks room (daemon/networks/) keeps the networks and the NIC rows: which
VM has which MAC and address on which bridge. The VM service needs only the
narrow surface below (:class:`Networks`, defined here by its consumer), and
turns each NIC into what QEMU takes: a TAP the daemon opens on the NIC's bridge
(host/net/tap.py), named for the VM and the NIC's index, and for the first NIC
the guest's boot configuration (``bungalow.ip``/``gw``/``dns``/``search``).

A VM with NICs has only those: no user-mode network, and its published ports
are the network's DNAT rules (``Networks.refresh``), not QEMU host forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any, Protocol

from bungalow.errors import UserError
from bungalow.host.net import tap
from bungalow.names import validate_name
from bungalow.qemu.argv import MachineSpec, NetConfig, NicSpec
from bungalow.qemu.hotplug import HOTPLUG_PORTS

#: QEMU's NICs are named nic0-nic9 and their TAPs bt<vm id><index>: ten at most.
MAX_NICS = 10
_CHOICE_RE = re.compile(r"^(?P<network>[^:]+)(?::(?P<address>[0-9.]+))?$")


class AttachedNic(Protocol):
    """A NIC row of the networks room: ``address`` with its prefix, ``gateway`` the
    network's host address (its DNS server too), ``domain`` the names' suffix."""

    @property
    def network(self) -> str: ...
    @property
    def bridge(self) -> str: ...
    @property
    def mac(self) -> str: ...
    @property
    def address(self) -> IPv4Interface: ...
    @property
    def gateway(self) -> Any: ...
    @property
    def domain(self) -> str: ...
    @property
    def index(self) -> int: ...


class Networks(Protocol):
    """What the VM service asks of the networks room (daemon/networks/service.py): NICs
    made and removed (which re-render the network's DHCP, names and DNAT rules), read
    (a database read), and the rules re-rendered after a VM's ports change."""

    async def attach(
        self,
        vm_id: str,
        vm_name: str,
        network: str,
        address: str | None = None,
        mac: str | None = None,
    ) -> AttachedNic: ...

    async def detach(self, vm_id: str, network: str) -> bool: ...

    async def detach_all(self, vm_id: str) -> None: ...

    def nics(self, vm_id: str) -> Sequence[AttachedNic]: ...

    async def refresh(self) -> None: ...


@dataclass(frozen=True)
class NetworkChoice:
    """A network a new VM goes on, and the address it asks for there (None: the next free)."""

    network: str
    address: IPv4Address | None = None

    @classmethod
    def parse(cls, text: str) -> NetworkChoice:
        """``NET`` or ``NET:ADDRESS``, as ``--network`` takes it; UserError with a sentence."""
        match = _CHOICE_RE.match(text.strip())
        if not match:
            raise UserError(
                f"The network {text!r} is not NAME or NAME:ADDRESS; write e.g. "
                "--network backend or --network backend:10.20.0.5."
            )
        validate_name(match["network"], what="network")
        return cls(match["network"], parse_address(match["address"]))

    def __str__(self) -> str:
        return self.network if self.address is None else f"{self.network}:{self.address}"


def parse_address(text: str | None) -> IPv4Address | None:
    """An IPv4 address a user asked for, or None; UserError with a sentence."""
    if text is None:
        return None
    try:
        return IPv4Address(text)
    except ValueError:
        raise UserError(
            f"The address {text!r} is not an IPv4 address; write it like 10.20.0.5."
        ) from None


def check_choices(choices: Sequence[NetworkChoice]) -> None:
    """UserError for a network named twice or more NICs than a VM can have."""
    if len(choices) > MAX_NICS:
        raise UserError(f"A VM can be on at most {MAX_NICS} networks; {len(choices)} were given.")
    seen: set[str] = set()
    for choice in choices:
        if choice.network in seen:
            raise UserError(
                f"The network {choice.network} is given twice; a VM has one NIC per network."
            )
        seen.add(choice.network)


def boot_config(nics: Sequence[AttachedNic]) -> NetConfig:
    """The first NIC's configuration the guest's /init applies at boot (``nics`` not
    empty); its search list holds every NIC's domain, the first NIC's first, joined by
    commas (a kernel command line word has no spaces: /init and the agent make them
    spaces). The first network's dnsmasq answers the others' names (its servers file)."""
    ordered = sorted(nics, key=lambda n: n.index)
    gateway = ipaddress.ip_interface(str(ordered[0].gateway)).ip
    search = ",".join(dict.fromkeys(nic.domain for nic in ordered))
    return NetConfig(
        address=str(ordered[0].address), gateway=str(gateway), dns=str(gateway), search=search
    )


def hotplugged_config(nic: AttachedNic) -> dict[str, str]:
    """What the agent's ``sync`` sets on a NIC plugged in while the VM runs, which the
    guest finds by its MAC (the kernel names it when pciehp sees it), and its domain,
    which the agent adds to the guest's search list."""
    return {"mac": nic.mac, "address": str(nic.address), "domain": nic.domain}


def guest_nics(nics: Sequence[AttachedNic]) -> list[dict[str, str]]:
    """What the agent's ``sync`` sets on each NIC, in the guest's order (eth0, eth1...):
    its MAC, address and (first NIC only) default route, name server and search domain."""
    configs: list[dict[str, str]] = []
    for position, nic in enumerate(sorted(nics, key=lambda n: n.index)):
        config = {"interface": f"eth{position}", "mac": nic.mac, "address": str(nic.address)}
        if position == 0:
            boot = boot_config(nics)
            config.update(gateway=boot.gateway, dns=boot.dns, search=boot.search)
        configs.append(config)
    return configs


def machine_nics(spec: MachineSpec, nics: Sequence[AttachedNic]) -> MachineSpec:
    """``spec`` with ``nics`` as its only network (in index order, without TAPs yet: see
    :func:`with_taps`) and the first one's boot configuration; as it is without NICs."""
    if not nics:
        return spec
    ordered = sorted(nics, key=lambda n: n.index)
    specs = tuple(NicSpec(id=f"nic{nic.index}", fd=None, mac=nic.mac) for nic in ordered)
    return dataclasses.replace(
        spec,
        nics=specs,
        net=boot_config(ordered),
        ports=(),
        net_relay=False,
        hotplug_ports=HOTPLUG_PORTS if spec.profile == "micro" else 0,
    )


@contextlib.asynccontextmanager
async def with_taps(
    spec: MachineSpec, vm_id: str, nics: Sequence[AttachedNic]
) -> AsyncIterator[MachineSpec]:
    """``spec`` (made by :func:`machine_nics`) with a TAP open on each NIC's bridge for
    the length of the block; without ``nics``, TAPs on no bridge (a snapshot's converter,
    whose NICs need a backend with the same offloads for the saved devices to load).

    QEMU inherits each TAP's descriptor when it starts inside the block; the daemon's
    own copies close after it, so the TAPs live exactly as long as that QEMU. The TAPs
    are made in a thread: pyroute2's netlink calls block (and run an event loop of
    their own).
    """
    if not spec.nics:
        yield spec
        return
    bridges: dict[str, str | None] = {f"nic{nic.index}": nic.bridge for nic in nics}
    prefix = tap.TAP_PREFIX if nics else tap.CONVERTER_PREFIX
    pairs = [
        (tap.tap_name(vm_id, int(nic.id[3:]), prefix), bridges.get(nic.id)) for nic in spec.nics
    ]
    taps = await asyncio.to_thread(tap.open_all, pairs)
    try:
        specs = tuple(
            dataclasses.replace(nic, fd=opened.fd)
            for nic, opened in zip(spec.nics, taps, strict=True)
        )
        yield dataclasses.replace(spec, nics=specs)
    finally:
        for opened in taps:
            opened.close()
