"""One daemon's networks as kernel objects: bridges, dnsmasq processes, the nft table,
the DOCKER-USER rules and the /etc/hosts block, all made from records.

Every method blocks (netlink, subprocesses, files) and is idempotent, so the same
call makes a network, repairs it after a crash, or finds it already right: call
from a thread in async code.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path

from bungalow.daemon.state.records import NetworkRecord, NicRecord
from bungalow.host.net import bridge, dnsmasq, docker, hostsfile, nftables, tap
from bungalow.host.net.dnsmasq import DnsmasqFiles, HostEntry, Lease
from bungalow.host.net.naming import HostNames
from bungalow.host.net.nftables import BridgedNetwork, Published

log = logging.getLogger(__name__)


def entries(nics: Iterable[NicRecord]) -> list[HostEntry]:
    return [HostEntry(nic.vm_id, nic.mac, nic.address, nic.hostname) for nic in nics]


def servers(peers: Iterable[NetworkRecord]) -> str:
    """The servers file of a network whose VMs are also on ``peers``."""
    return dnsmasq.servers_text([(peer.domain, peer.gateway.ip) for peer in peers])


class Kernel:
    """The kernel side of the networks of the daemon whose data directory is ``data_root``;
    each network's files are in ``<data_root>/networks/<id>/``."""

    def __init__(self, data_root: Path, hosts: Path = hostsfile.HOSTS) -> None:
        self.names = HostNames(data_root)
        self.root = data_root / "networks"
        self.hosts = hosts

    def files(self, network_id: int) -> DnsmasqFiles:
        return DnsmasqFiles(self.root / str(network_id))

    def serve(
        self,
        network: NetworkRecord,
        nics: list[NicRecord],
        peers: Iterable[NetworkRecord] = (),
    ) -> int:
        """Make (or find, or repair) the network's bridge and dnsmasq, serving exactly
        ``nics`` and forwarding the names of ``peers`` (networks sharing a VM with it) to
        their dnsmasq; dnsmasq's PID. New host files are read by dnsmasq's inotify; removed
        ones and a changed servers file are read on a SIGHUP, and stale leases released."""
        files = self.files(network.id)
        files.ensure()
        removed = dnsmasq.write_entries(files, network.domain, entries(nics))
        removed |= dnsmasq.write_servers(files, servers(peers))
        bridge.ensure(network.bridge, network.gateway)
        bridge.enable_ip_forward()
        process = dnsmasq.running(files)
        if process is None:
            command = dnsmasq.argv(network.bridge, network.gateway, network.domain, files)
            process = dnsmasq.start(command, files)
        elif removed:
            dnsmasq.reload(files)
        self.release_stale(network, nics)
        return process.pid

    def stands(self, network: NetworkRecord) -> bool:
        """Whether the network's bridge exists and its dnsmasq runs (reads only)."""
        return tap.exists(network.bridge) and dnsmasq.running(self.files(network.id)) is not None

    def rejoin_taps(self, network: NetworkRecord, nics: list[NicRecord]) -> None:
        """Put the TAPs of ``nics`` that exist (their VMs run) back on the bridge."""
        for nic in nics:
            tap.rejoin(tap.tap_name(nic.vm_id, nic.index), network.bridge)

    def route(self, network: NetworkRecord, peers: Iterable[NetworkRecord]) -> None:
        """Make the network's dnsmasq forward exactly ``peers``' names (a SIGHUP when
        its servers file changed); nothing else is touched."""
        files = self.files(network.id)
        if dnsmasq.write_servers(files, servers(peers)):
            dnsmasq.reload(files)

    def release_stale(self, network: NetworkRecord, nics: list[NicRecord]) -> None:
        """Release every lease no NIC row holds (a NIC gone, or an address changed)."""
        held = {(nic.mac.lower(), nic.address) for nic in nics}
        for lease in dnsmasq.leases(self.files(network.id)):
            if (lease.mac, lease.address) not in held:
                dnsmasq.release(network.bridge, lease)

    def leases(self, network: NetworkRecord) -> list[Lease]:
        return dnsmasq.leases(self.files(network.id))

    def dnsmasq_pid(self, network: NetworkRecord) -> int | None:
        process = dnsmasq.running(self.files(network.id))
        return None if process is None else process.pid

    def tear_down(self, network_id: int, bridge_name: str) -> None:
        """End the network's dnsmasq, remove its bridge and its files; nothing is left."""
        dnsmasq.stop(self.files(network_id))
        bridge.delete(bridge_name)
        shutil.rmtree(self.files(network_id).root, ignore_errors=True)

    def sweep(self, networks: list[NetworkRecord]) -> list[str]:
        """Remove this daemon's bridges and network directories that no record names (what
        a daemon killed half-way through a removal left); what was removed."""
        removed = []
        bridges = {network.bridge for network in networks}
        for name in bridge.named(self.names.bridge_prefix):
            if self.names.owns_bridge(name) and name not in bridges:
                bridge.delete(name)
                removed.append(f"bridge {name}")
        ids = {str(network.id) for network in networks}
        if self.root.exists():
            for directory in sorted(self.root.iterdir()):
                if directory.name not in ids:
                    dnsmasq.stop(DnsmasqFiles(directory))
                    shutil.rmtree(directory, ignore_errors=True)
                    removed.append(f"network directory {directory.name}")
        return removed

    def anything_left(self) -> bool:
        """Whether any network directory, bridge or nft table of this daemon's exists (what
        a daemon killed while removing the last network leaves): cheap when none does."""
        if self.root.exists() and any(self.root.iterdir()):
            return True
        if bridge.named(self.names.bridge_prefix):
            return True
        return shutil.which("nft") is not None and nftables.exists(self.names.table)

    def apply(
        self,
        networks: list[NetworkRecord],
        published: list[Published],
        names: list[tuple[IPv4Address, str]],
    ) -> None:
        """Make the nft table, the DOCKER-USER rules and the /etc/hosts block say exactly
        this; with no networks, the table and the rules go."""
        table = self.names.table
        bridged = [BridgedNetwork(n.bridge, n.subnet) for n in networks]
        if networks or nftables.exists(table):
            nftables.apply(nftables.render(table, self.names.bridge_prefix, bridged, published))
        docker.allow(table, self.names.bridge_prefix if networks else None)
        lines = [f"{address} {name}" for address, name in sorted(names)]
        try:
            hostsfile.write_block(self.names.hosts_marker(), lines, self.hosts)
        except OSError as error:  # a read-only /etc/hosts costs the host its names, no more
            log.warning("could not write the VMs' names to %s: %s", self.hosts, error)
