"""NetworkService: make and remove private networks, and give VMs NICs on them.

Every change holds a lock (one per network for NICs, one for making and removing
networks) and is written down before its first kernel step: a network's row carries
``operation`` (create, remove) until its last, so a daemon killed half-way settles it
at start (:meth:`NetworkService.adopt`): nothing half made is kept. A NIC's row is
written before dnsmasq's files and removed before them, and adopt rewrites every
file from the rows, so a kill between the two leaves nothing stale.

The host side, rules and names (nft table, DOCKER-USER, /etc/hosts) are one function
of the rows (:meth:`NetworkService.refresh`): the VM side calls it when a VM's
published ports may have changed (created, removed, attached).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import re
import secrets
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from bungalow.daemon.networks.kernel import Kernel
from bungalow.daemon.networks.nic import Nic
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.records import NetworkOperation, NetworkRecord, NicRecord
from bungalow.daemon.state.store import Store
from bungalow.errors import BungalowError, ConflictError, InvalidNameError, UserError
from bungalow.host.net import subnets
from bungalow.host.net.dnsmasq import Lease
from bungalow.host.net.nftables import Published
from bungalow.names import validate_name
from bungalow.qemu.argv import PortForward

log = logging.getLogger(__name__)

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
#: QEMU's own OUI, as libvirt's and bungalow's user-mode NICs use.
_OUI = "52:54:00"


@dataclass(frozen=True)
class Member:
    """A VM on a network, as ``network inspect`` shows it."""

    vm: str
    nic: Nic


@dataclass(frozen=True)
class NetworkReport:
    network: NetworkRecord
    members: list[Member]
    leases: list[Lease]
    dnsmasq_pid: int | None


def _parse_address(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise UserError(
            f"The address {text!r} is not an IPv4 address, such as 10.20.0.5."
        ) from None


def _parse_mac(text: str) -> str:
    mac = text.lower()
    if not _MAC.match(mac) or int(mac[:2], 16) & 1:
        raise UserError(
            f"The MAC address {text!r} is not a unicast MAC; write six hex pairs such as "
            "52:54:00:12:34:56."
        )
    return mac


def running_as_root() -> bool:
    return os.geteuid() == 0


#: The programs a network needs, and the Debian package each comes in.
TOOLS = {"dnsmasq": "dnsmasq-base", "dhcp_release": "dnsmasq-utils", "nft": "nftables"}


def missing_tools() -> list[str]:
    """What :data:`TOOLS` lacks on this host's PATH, as ``program (package)``."""
    return [f"{tool} ({deb})" for tool, deb in TOOLS.items() if shutil.which(tool) is None]


def peers_of(
    network_id: int, nics: Iterable[NicRecord], networks: Iterable[NetworkRecord]
) -> builtins.list[NetworkRecord]:
    """The networks other than ``network_id`` that share at least one VM with it (a VM
    with NICs on both), by id: the ones whose names its dnsmasq forwards to theirs, so a
    guest asking its first NIC's dnsmasq (glibc asks the first nameserver only) finds
    the names of its other networks too."""
    on: defaultdict[str, set[int]] = defaultdict(set)
    for nic in nics:
        on[nic.vm_id].add(nic.network_id)
    shared = set().union(*(ids for ids in on.values() if network_id in ids)) - {network_id}
    return sorted((n for n in networks if n.id in shared), key=lambda n: n.id)


class NetworkService:
    """The daemon's private networks (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        kernel: Kernel,
        clock: Clock,
        is_root: Callable[[], bool] = running_as_root,
    ) -> None:
        self.store = store
        self.kernel = kernel
        self.clock = clock
        self._is_root = is_root
        self._structure = asyncio.Lock()
        self._host = asyncio.Lock()
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- networks ------------------------------------------------------------------------------

    def _require_root(self) -> None:
        if not self._is_root():
            raise ConflictError(
                f"Private networks need root (bridges, dnsmasq and nftables), and bungalowd "
                f"runs as uid {os.geteuid()}; run bungalowd as root, or launch VMs without "
                "--network (user-mode NAT)."
            )
        if missing := missing_tools():
            raise ConflictError(
                f"Private networks need {', '.join(missing)}, missing on this host; install "
                "those Debian packages (scripts/install does)."
            )

    async def create(
        self, name: str, subnet: str | None = None, domain: str | None = None
    ) -> NetworkRecord:
        """Make network ``name``: its row, bridge, dnsmasq and rules. ``subnet`` (CIDR,
        /16-/29) or the first free /24 of 10.77.0.0/16; ``domain`` defaults to the name.

        Raises UserError (bad name or CIDR), ConflictError (not root, the name taken, a
        subnet overlapping another network or a host route); on any failure nothing of
        it is left.
        """
        validate_name(name, what="network")
        domain = validate_name(domain or name, what="domain")
        if not domain[0].isalpha():
            raise InvalidNameError(
                f"The network name {domain!r} does not start with a letter; its VMs' names end "
                f"in it (db.{domain}), and a name of digits would read as an address. Choose "
                "a name starting with a letter."
            )
        self._require_root()
        wanted = None if subnet is None else subnets.parse_subnet(subnet)
        async with self._structure:
            if self.store.networks.find(name) is not None:
                raise ConflictError(f"A network named {name} already exists; choose another name.")
            networks = self.store.networks.list()
            ours = {n.name: n.subnet for n in networks}
            host = await asyncio.to_thread(subnets.host_prefixes, [n.bridge for n in networks])
            if wanted is None:
                wanted = subnets.pick_free([*ours.values(), *host])
            subnets.check_free(wanted, ours, host)
            network = self.store.networks.insert(
                name, wanted, subnets.gateway_of(wanted), domain,
                self.kernel.names.bridge, self.clock.now(),
            )  # fmt: skip
            try:
                await asyncio.to_thread(self.kernel.serve, network, [])
                await self.refresh()
            except BaseException:
                await self._undo(network)
                raise
            self.store.networks.set_operation(network.id, None)
            self.store.events.add(
                None, "network-created", f"network {name} {wanted} created", subject=name
            )
            return self.store.networks.get(name)

    async def _undo(self, network: NetworkRecord) -> None:
        """Take a network down and forget it (a failed create, an interrupted one)."""
        await asyncio.to_thread(self.kernel.tear_down, network.id, network.bridge)
        self.store.networks.delete(network.id)
        await self.refresh()

    async def remove(self, name: str) -> None:
        """Take network ``name`` down; ConflictError naming the VMs while any has a NIC on it."""
        async with self._structure:
            network = self.store.networks.get(name)
            async with self._locks[network.id]:
                users = self.store.nics.on_network(network.id)
                if users:
                    vms = ", ".join(sorted(self._vm_name(nic) for nic in users))
                    raise ConflictError(
                        f"Network {name} is in use by {vms}; remove those VMs or disconnect "
                        "them from it first."
                    )
                self.store.networks.set_operation(network.id, NetworkOperation.REMOVE)
                await self._undo(network)
            self._locks.pop(network.id, None)
            self.store.events.add(None, "network-removed", f"network {name} removed", subject=name)

    def list(self) -> builtins.list[NetworkRecord]:
        return self.store.networks.list()

    def get(self, name: str) -> NetworkRecord:
        """NetworkNotFoundError with a sentence when there is none."""
        return self.store.networks.get(name)

    def members(self, network: NetworkRecord) -> builtins.list[Member]:
        return [
            Member(self._vm_name(nic), Nic.of(network, nic))
            for nic in self.store.nics.on_network(network.id)
        ]

    async def inspect(self, name: str) -> NetworkReport:
        """The network, its VMs with their NICs, dnsmasq's leases and its PID."""
        network = self.store.networks.get(name)
        leases = await asyncio.to_thread(self.kernel.leases, network)
        pid = await asyncio.to_thread(self.kernel.dnsmasq_pid, network)
        return NetworkReport(network, self.members(network), leases, pid)

    def _vm_name(self, nic: NicRecord) -> str:
        vm = self.store.vms.by_id(nic.vm_id)
        return vm.name if vm is not None else nic.hostname

    # -- NICs ----------------------------------------------------------------------------------

    def nics(self, vm_id: str) -> builtins.list[Nic]:
        """The VM's NICs, by index."""
        found = []
        for nic in self.store.nics.of_vm(vm_id):
            network = self.store.networks.by_id(nic.network_id)
            if network is not None:
                found.append(Nic.of(network, nic))
        return found

    async def attach(
        self,
        vm_id: str,
        vm_name: str,
        network: str,
        address: str | None = None,
        mac: str | None = None,
    ) -> Nic:
        """Give VM ``vm_id`` a NIC on ``network`` answering to ``vm_name``: ``address``
        (refused outside the subnet, the gateway, or taken) or the lowest free one, and
        ``mac`` or a new ``52:54:00`` one. dnsmasq serves it before this returns.

        Raises NetworkNotFoundError, UserError, ConflictError (the VM is on it already,
        the address or MAC taken, the network being made or removed).
        """
        record = self.store.networks.get(network)
        async with self._locks[record.id]:
            record = self.store.networks.get(network)
            if record.operation is not None:
                raise ConflictError(
                    f"Network {network} is being {record.operation}d; try again in a moment."
                )
            on_it = self.store.nics.on_network(record.id)
            if any(nic.vm_id == vm_id for nic in on_it):
                raise ConflictError(f"{vm_name} already has a NIC on network {network}.")
            taken = {nic.address: self._vm_name(nic) for nic in on_it}
            if address is None:
                chosen = subnets.next_address(record.subnet, taken).ip
            else:
                chosen = _parse_address(address)
                subnets.check_address(chosen, record.subnet, taken)
            own = self.store.nics.of_vm(vm_id)
            nic = NicRecord(
                vm_id=vm_id,
                network_id=record.id,
                index=max((n.index for n in own), default=-1) + 1,
                mac=self._new_mac() if mac is None else _parse_mac(mac),
                address=chosen,
                hostname=vm_name,
            )
            self.store.nics.insert(nic)
            try:
                await self._serve(record)
            except BaseException:
                self.store.nics.delete(vm_id, record.id)
                await self._serve(record)
                raise
        await self._route(vm_id)
        await self.refresh()
        return Nic.of(record, nic)

    def _new_mac(self) -> str:
        taken = self.store.nics.macs()
        while True:
            mac = f"{_OUI}:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
            if mac not in taken:
                return mac

    def _peers(self, network: NetworkRecord) -> builtins.list[NetworkRecord]:
        return peers_of(network.id, self.store.nics.list(), self.store.networks.list())

    async def _serve(self, network: NetworkRecord) -> None:
        nics = self.store.nics.on_network(network.id)
        await asyncio.to_thread(self.kernel.serve, network, nics, self._peers(network))

    async def _route(self, vm_id: str) -> None:
        """Rewrite the servers file of every network the VM is on (its NICs changed, so
        which networks share a VM with which did too)."""
        for nic in self.store.nics.of_vm(vm_id):
            network = self.store.networks.by_id(nic.network_id)
            if network is not None:
                await asyncio.to_thread(self.kernel.route, network, self._peers(network))

    async def detach(self, vm_id: str, network: str) -> bool:
        """Remove the VM's NIC on ``network`` (its address is free at once); False when it
        had none."""
        record = self.store.networks.get(network)
        async with self._locks[record.id]:
            if not self.store.nics.delete(vm_id, record.id):
                return False
            await self._serve(record)
        await self._route(vm_id)
        await self.refresh()
        return True

    async def detach_all(self, vm_id: str) -> None:
        """Remove every NIC of the VM (it is being removed)."""
        for nic in self.store.nics.of_vm(vm_id):
            network = self.store.networks.by_id(nic.network_id)
            if network is not None:
                await self.detach(vm_id, network.name)

    async def rename(self, vm_id: str, name: str) -> None:
        """The VM's NICs answer to ``name`` from now on (DNS, /etc/hosts)."""
        self.store.nics.rename(vm_id, name)
        for nic in self.store.nics.of_vm(vm_id):
            network = self.store.networks.by_id(nic.network_id)
            if network is not None:
                async with self._locks[network.id]:
                    await self._serve(network)
        await self.refresh()

    # -- the host's rules and names ------------------------------------------------------------

    def published(self) -> builtins.list[Published]:
        """Every VM's published ports (``-p``) as DNAT to its first NIC's address."""
        found = []
        first: dict[str, NicRecord] = {}
        for nic in self.store.nics.list():
            first.setdefault(nic.vm_id, nic)
        for vm_id, nic in sorted(first.items()):
            vm = self.store.vms.by_id(vm_id)
            for text in vm.ports if vm is not None else []:
                forward = PortForward.parse(text)
                found.append(
                    Published(
                        IPv4Address(forward.host_addr), forward.host_port, forward.protocol,
                        nic.address, forward.guest_port,
                    )
                )  # fmt: skip
        return found

    def _names(self) -> builtins.list[tuple[IPv4Address, str]]:
        networks = {n.id: n for n in self.store.networks.list()}
        return [
            (nic.address, f"{nic.hostname}.{networks[nic.network_id].domain}")
            for nic in self.store.nics.list()
            if nic.network_id in networks
        ]

    async def refresh(self) -> None:
        """Make the nft table, DOCKER-USER and /etc/hosts match the rows as they are now."""
        if not self._is_root():
            return
        async with self._host:
            networks = self.store.networks.list()
            await asyncio.to_thread(self.kernel.apply, networks, self.published(), self._names())

    async def repair(self) -> builtins.list[str]:
        """Serve again every settled network whose bridge or dnsmasq is gone, put its
        VMs' TAPs back on its bridge and apply the rules again; the names of the networks
        repaired (empty, and nothing run but reads, when all stand)."""
        if not self._is_root():
            return []
        repaired: builtins.list[str] = []
        for network in self.store.networks.list():
            if network.operation is not None:
                continue
            if await asyncio.to_thread(self.kernel.stands, network):
                continue
            async with self._locks[network.id]:
                await self._serve(network)
                nics = self.store.nics.on_network(network.id)
                await asyncio.to_thread(self.kernel.rejoin_taps, network, nics)
            repaired.append(network.name)
        if repaired:
            await self.refresh()
        return repaired

    # -- start-up ------------------------------------------------------------------------------

    async def adopt(self) -> None:
        """Account for what an earlier daemon left: settle interrupted creates and removals,
        make or find every network's bridge and dnsmasq (a running dnsmasq is kept), sweep
        this daemon's bridges and directories no row names, and apply the rules."""
        networks = self.store.networks.list()
        if not self._is_root() or missing_tools():
            if networks:
                log.warning("not root or %s missing: networks left down", ", ".join(TOOLS))
            return
        if not networks and not await asyncio.to_thread(self.kernel.anything_left):
            return
        for network in networks:
            if network.operation is not None:
                log.info("network %s: finishing an interrupted %s", network.name, network.operation)
                await asyncio.to_thread(self.kernel.tear_down, network.id, network.bridge)
                self.store.networks.delete(network.id)
                continue
            try:
                await self._serve(network)
            except Exception as error:  # one broken network does not keep the daemon down
                log.error("network %s could not be brought up: %s", network.name, error)
        networks = self.store.networks.list()
        for what in await asyncio.to_thread(self.kernel.sweep, networks):
            log.info("removed %s, which no network names", what)
        try:
            await self.refresh()
        except BungalowError as error:  # the daemon serves on; creating a network says why
            log.error("the networks' rules could not be applied: %s", error.message)
