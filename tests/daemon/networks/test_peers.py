"""Which networks' names a network's dnsmasq forwards (its servers file): pure, no kernel."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from bungalow.daemon.networks.kernel import servers
from bungalow.daemon.networks.service import peers_of
from bungalow.daemon.state.records import NetworkRecord, NicRecord


def network(id: int, name: str) -> NetworkRecord:
    subnet = IPv4Network(f"10.240.{id}.0/24")
    gateway = IPv4Interface(f"10.240.{id}.1/24")
    return NetworkRecord(id, name, subnet, gateway, f"bglx{id}", name, 0.0)


def nic(vm: str, network_id: int) -> NicRecord:
    address = IPv4Address(f"10.240.{network_id}.{10 + len(vm)}")
    return NicRecord(vm, network_id, 0, "52:54:00:00:00:01", address, vm)


BACK, FRONT, OTHER = network(1, "dnsback"), network(2, "dnsfront"), network(3, "dnsother")
NETWORKS = [BACK, FRONT, OTHER]


def test_a_network_forwards_only_the_networks_sharing_a_vm_with_it() -> None:
    nics = [nic("m", 1), nic("m", 2), nic("lone", 3), nic("db", 1)]
    assert peers_of(1, nics, NETWORKS) == [FRONT]
    assert peers_of(2, nics, NETWORKS) == [BACK]
    assert peers_of(3, nics, NETWORKS) == []
    assert peers_of(1, [], NETWORKS) == []


def test_two_vms_bridging_three_networks_make_each_forward_its_own_neighbours() -> None:
    nics = [nic("a", 1), nic("a", 2), nic("b", 2), nic("b", 3)]
    assert peers_of(2, nics, NETWORKS) == [BACK, OTHER]
    assert peers_of(1, nics, NETWORKS) == [FRONT]  # not OTHER: no VM is on both


def test_the_servers_file_sends_each_domain_to_its_gateway() -> None:
    assert servers([OTHER, FRONT]) == ("server=/dnsfront/10.240.2.1\nserver=/dnsother/10.240.3.1\n")
    assert servers([]) == ""
