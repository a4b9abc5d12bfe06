"""NetworkService on real kernel objects, no VM: bridges, dnsmasq, nftables, /etc/hosts.

Each "VM" is a network namespace plugged into the bridge with a veth pair, asking
for its address with busybox udhcpc and for names with busybox nslookup. The
networks use 10.201.0.0/16. Every test removes all it made, and checks so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Coroutine, Iterator
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bungalow.daemon.networks.kernel import Kernel
from bungalow.daemon.networks.service import NetworkService
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.db import Database
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.state.store import Store
from bungalow.errors import ConflictError
from bungalow.host.net import hostsfile, tap
from tests.daemon.networks.kit import UDHCPC_SCRIPT, Guest, Guests, leftovers, sh
from tests.support import free_port, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="networks need root")
T = TypeVar("T")


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = Store(Database(root / "bungalow.db"))
        self.kernel = Kernel(root)
        self.service = NetworkService(self.store, self.kernel, Clock())
        script = root / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        self.guests = Guests(script)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coroutine)

    def join(self, vm: str, network: str, address: str | None = None) -> Guest:
        """A guest plugged into ``network``'s bridge as VM ``vm``'s NIC, with its lease."""
        guest = self.guests.plug(self.service.get(network).bridge)
        self.run(self.service.attach(self.vm(vm), vm, network, address, guest.mac))
        assert guest.dhcp(self.guests.script)
        return guest

    def vm(self, name: str, ports: list[str] | None = None) -> str:
        """A VM row (never booted) whose published ports the rules are made from."""
        record = VmRecord(
            id=f"id-{name}", name=name, state=VmState.CREATED, image_id="i", image_name="i",
            profile="micro", cpus=1, memory=1, disk_size=1, ports=ports or [],
        )  # fmt: skip
        self.store.vms.insert(record)
        return record.id

    def leftovers(self) -> list[str]:
        names = self.kernel.names
        return leftovers(names.bridge_prefix, names.table, self.root)


@pytest.fixture
def net() -> Iterator[Setup]:
    root = Path(tempfile.mkdtemp(prefix="net-", dir="/tmp"))
    setup = Setup(root)
    try:
        yield setup
    finally:
        setup.guests.close()
        for network in setup.service.list():
            for member in setup.service.members(network):
                asyncio.run(setup.service.detach(f"id-{member.vm}", network.name))
            asyncio.run(setup.service.remove(network.name))
        left = setup.leftovers()
        block = hostsfile.block(setup.kernel.names.hosts_marker())
        setup.store.close()
        shutil.rmtree(root, ignore_errors=True)
        assert not left and not block, f"left behind: {left} {block}"


def test_guests_get_their_addresses_and_names_and_reach_each_other(net: Setup) -> None:
    network = net.run(net.service.create("netapp", "10.201.10.0/24"))
    a = net.guests.plug(network.bridge)
    b = net.guests.plug(network.bridge)
    nic_a = net.run(net.service.attach(net.vm("alpha"), "alpha", "netapp", mac=a.mac))
    nic_b = net.run(
        net.service.attach(net.vm("beta"), "beta", "netapp", address="10.201.10.77", mac=b.mac)
    )
    assert nic_a.address == IPv4Interface("10.201.10.2/24")
    assert nic_b.address == IPv4Interface("10.201.10.77/24")
    assert a.dhcp(net.guests.script) == "10.201.10.2/24"
    assert b.dhcp(net.guests.script) == "10.201.10.77/24"

    answer = a.run("busybox", "nslookup", "beta.netapp", "10.201.10.1").stdout
    assert "10.201.10.77" in answer
    # the host resolves them too, from its /etc/hosts block
    assert sh("getent", "hosts", "alpha.netapp").stdout.split()[0] == "10.201.10.2"
    # bridged between two guests of one network (br_netfilter: through the forward hook)
    assert a.ping("10.201.10.77")
    # out of the network, masqueraded: the host's own gateway answers only its subnet
    assert a.ping("192.0.2.1")

    detail = net.run(net.service.inspect("netapp"))
    leases = {lease.mac: str(lease.address) for lease in detail.leases}
    assert leases == {a.mac: "10.201.10.2", b.mac: "10.201.10.77"}


def test_two_networks_cannot_reach_each_other(net: Setup) -> None:
    net.run(net.service.create("netone", "10.201.11.0/24"))
    net.run(net.service.create("nettwo", "10.201.12.0/24"))
    a, b = net.join("a", "netone"), net.join("b", "nettwo")
    assert a.ping("192.0.2.1") and b.ping("192.0.2.1")  # each reaches out
    assert not a.ping("10.201.12.2")
    assert not b.ping("10.201.11.2")
    with pytest.raises(ConflictError, match="overlaps network netone's"):
        net.run(net.service.create("netthree", "10.201.11.128/25"))
    with pytest.raises(ConflictError, match="in use by a"):
        net.run(net.service.remove("netone"))


def test_traffic_passes_a_docker_like_forward_policy_of_drop(net: Setup) -> None:
    """Docker's FORWARD chain (policy drop, jumping to DOCKER-USER first) in a table of the
    test's own: bungalow's rules in DOCKER-USER let its traffic through, and without
    them it is dropped, so the test shows both."""
    table = f"netdock{net.kernel.names.tag}"
    subprocess.run(
        ["nft", "-f", "-"],
        input=f"table ip {table} {{\n chain DOCKER-USER {{ }}\n chain FORWARD {{ type filter "
        "hook forward priority filter; policy drop; jump DOCKER-USER; }\n}\n",
        text=True,
        check=True,
    )
    try:
        net.run(net.service.create("netdock", "10.201.13.0/24"))
        a, _ = net.join("a", "netdock"), net.join("b", "netdock")
        assert a.ping("10.201.13.3") and a.ping("192.0.2.1")
        sh("nft", "flush", "chain", "ip", table, "DOCKER-USER")
        assert not a.ping("10.201.13.3") and not a.ping("192.0.2.1")
        net.run(net.service.refresh())
        assert a.ping("10.201.13.3") and a.ping("192.0.2.1")
        net.run(net.service.detach("id-a", "netdock"))
        net.run(net.service.detach("id-b", "netdock"))
        net.run(net.service.remove("netdock"))
        chain = sh("nft", "list", "chain", "ip", table, "DOCKER-USER").stdout
        # The last network took its rules with it (other daemons running beside this
        # test may keep rules of their own in any DOCKER-USER chain they find).
        assert f'"bungalow {net.kernel.names.table}"' not in chain
    finally:
        sh("nft", "delete", "table", "ip", table, check=False)


def test_a_port_published_on_127_0_0_1_reaches_the_guest(net: Setup) -> None:
    network = net.run(net.service.create("netpub", "10.201.14.0/24"))
    guest = net.guests.plug(network.bridge)
    port = free_port()
    vm = net.vm("web", ports=[f"127.0.0.1:{port}:8000/tcp"])
    net.run(net.service.attach(vm, "web", "netpub", mac=guest.mac))
    assert guest.dhcp(net.guests.script)
    server = subprocess.Popen(
        ["ip", "netns", "exec", guest.ns, "busybox", "nc", "-ll", "-p", "8000", "-e", "echo", "hi"]
    )
    try:
        answer = wait_until(
            "the published port to answer",
            lambda: sh("busybox", "nc", "-w", "2", "127.0.0.1", str(port), check=False).stdout,
            timeout=20,
        )
        assert answer == "hi\n"
    finally:
        server.kill()
        server.wait()


def test_a_nic_removed_frees_its_address_name_and_lease_at_once(net: Setup) -> None:
    network = net.run(net.service.create("netre", "10.201.15.0/24"))
    old = net.guests.plug(network.bridge)
    net.run(net.service.attach(net.vm("old"), "old", "netre", mac=old.mac))
    assert old.dhcp(net.guests.script) == "10.201.15.2/24"
    assert sh("getent", "hosts", "old.netre", check=False).returncode == 0
    net.run(net.service.detach("id-old", "netre"))
    assert sh("getent", "hosts", "old.netre", check=False).returncode != 0
    assert "10.201.15.2" not in old.run("busybox", "nslookup", "old.netre", "10.201.15.1").stdout
    # another MAC gets the same address at once: the old lease was released
    new = net.guests.plug(network.bridge)
    nic = net.run(net.service.attach(net.vm("new"), "new", "netre", mac=new.mac))
    assert nic.address.ip == IPv4Address("10.201.15.2")
    assert new.dhcp(net.guests.script) == "10.201.15.2/24"


def test_a_daemon_not_root_is_refused_and_makes_nothing(net: Setup) -> None:
    service = NetworkService(net.store, net.kernel, Clock(), is_root=lambda: False)
    with pytest.raises(ConflictError, match="Private networks need root"):
        asyncio.run(service.create("netnoroot", "10.201.16.0/24"))
    assert net.service.list() == [] and net.leftovers() == []


def test_nics_attached_at_once_get_distinct_addresses_and_a_rename_moves_the_name(
    net: Setup,
) -> None:
    net.run(net.service.create("netmany", "10.201.17.0/24"))

    async def attach_all() -> list[str]:
        nics = await asyncio.gather(
            *(net.service.attach(net.vm(f"vm{n}"), f"vm{n}", "netmany") for n in range(6))
        )
        return [str(nic.address.ip) for nic in nics]

    addresses = net.run(attach_all())
    assert sorted(addresses) == [f"10.201.17.{n}" for n in range(2, 8)]
    net.run(net.service.rename("id-vm0", "renamed"))
    assert sh("getent", "hosts", "renamed.netmany").stdout.split()[0] == addresses[0]
    assert sh("getent", "hosts", "vm0.netmany", check=False).returncode != 0
    assert [nic.index for nic in net.service.nics("id-vm0")] == [0]


def test_a_dead_dnsmasq_is_started_again_by_the_next_change(net: Setup) -> None:
    net.run(net.service.create("netheal", "10.201.18.0/24"))
    pid = net.run(net.service.inspect("netheal")).dnsmasq_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(
        "dnsmasq to die", lambda: net.run(net.service.inspect("netheal")).dnsmasq_pid is None
    )
    guest = net.join("healed", "netheal")
    assert guest.run("busybox", "nslookup", "healed.netheal", "10.201.18.1").returncode == 0


def test_a_lost_dnsmasq_or_bridge_is_put_back_with_its_taps(net: Setup) -> None:
    """What the networks' watch does (daemon/networks/watch.py): a dnsmasq killed and a
    bridge deleted under a running daemon come back, and a running VM's TAP (held open
    here as QEMU would) goes back on the new bridge."""
    net.run(net.service.create("netfix", "10.201.14.0/24"))
    nic = net.run(net.service.attach(net.vm("fix"), "fix", "netfix"))
    held = tap.open_tap(tap.tap_name("id-fix", nic.index), nic.bridge)
    try:
        assert net.run(net.service.repair()) == []  # all stands: nothing done
        network = net.service.get("netfix")
        first = net.kernel.dnsmasq_pid(network)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until("dnsmasq to die", lambda: net.kernel.dnsmasq_pid(network) is None)
        sh("ip", "link", "del", nic.bridge)
        assert net.run(net.service.repair()) == ["netfix"]
        again = net.kernel.dnsmasq_pid(network)
        assert again is not None and again != first
        master = Path(f"/sys/class/net/{held.name}/master").resolve().name
        assert master == nic.bridge
    finally:
        held.close()
        net.run(net.service.detach("id-fix", "netfix"))
        net.run(net.service.remove("netfix"))


def test_a_network_answers_another_ones_names_only_while_a_vm_is_on_both(net: Setup) -> None:
    """glibc asks a VM's first nameserver only: the first network's dnsmasq forwards the
    names of every network sharing a VM with it (its servers file), and no other."""
    net.run(net.service.create("dnsback", "10.240.1.0/24"))
    net.run(net.service.create("dnsfront", "10.240.2.0/24"))
    guest = net.join("dnsg", "dnsback")
    net.join("dnsx", "dnsfront", "10.240.2.50")

    def answers() -> bool:
        found = guest.run("busybox", "nslookup", "dnsx.dnsfront", "10.240.1.1").stdout
        return "10.240.2.50" in found

    assert not answers()
    net.run(net.service.attach("id-dnsg", "dnsg", "dnsfront"))  # a second NIC, on front
    wait_until("back's dnsmasq answers dnsx.dnsfront", answers, timeout=10)
    net.run(net.service.detach("id-dnsg", "dnsfront"))
    wait_until("back's dnsmasq forgets dnsfront", lambda: not answers(), timeout=10)
