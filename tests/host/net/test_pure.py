"""The pure parts of the host's network side: names, subnets, dnsmasq's argv and files'
lines, the nft script, the /etc/hosts block. Milliseconds, no kernel object."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from bungalow.errors import ConflictError, UserError
from bungalow.host.net import hostsfile, subnets
from bungalow.host.net.dnsmasq import DnsmasqFiles, HostEntry, Lease, argv
from bungalow.host.net.naming import IFNAME_MAX, HostNames, default_home_without_env
from bungalow.host.net.nftables import BridgedNetwork, Published, render
from bungalow.host.processes import _pidfile_of

NET = IPv4Network


def test_names_are_per_daemon_and_fit_an_interface_name() -> None:
    a, b = HostNames(Path("/tmp/a")), HostNames(Path("/tmp/b"))
    assert a.bridge_prefix != b.bridge_prefix and a.table != b.table
    assert a.table.startswith("bungalow-")
    assert HostNames(default_home_without_env()).table == "bungalow"
    assert len(a.bridge(9_999_999)) == IFNAME_MAX
    with pytest.raises(ValueError):
        a.bridge(10_000_000)
    assert a.owns_bridge(a.bridge(12)) and not a.owns_bridge(b.bridge(12))
    assert not a.owns_bridge(a.bridge_prefix + "x")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("bogus", "not an IPv4 network"),
        ("10.0.0.1/24", "host bits set"),
        ("10.0.0.0/30", "/30 prefix"),
        ("10.0.0.0/8", "/8 prefix"),
        ("8.8.8.0/24", "not a private range"),
        ("10.0.0.0", "no prefix length"),
    ],
)
def test_bad_subnets_are_refused_with_a_sentence(text: str, words: str) -> None:
    with pytest.raises(UserError, match=words):
        subnets.parse_subnet(text)


def test_a_subnet_overlapping_a_network_or_a_host_route_is_refused() -> None:
    ours = {"backend": NET("10.20.0.0/24")}
    with pytest.raises(ConflictError, match="overlaps network backend's"):
        subnets.check_free(NET("10.20.0.128/25"), ours, [])
    with pytest.raises(ConflictError, match=r"host's route or address 192\.168\.1\.0/24"):
        subnets.check_free(NET("192.168.0.0/16"), ours, [NET("192.168.1.0/24")])
    subnets.check_free(NET("10.21.0.0/24"), ours, [NET("0.0.0.0/0"), NET("10.22.0.0/16")])


def test_a_free_subnet_is_the_first_24_that_overlaps_nothing() -> None:
    pool = NET("10.77.0.0/22")
    taken = [NET("10.77.0.0/24"), NET("10.77.1.128/25"), NET("0.0.0.0/0")]
    assert subnets.pick_free(taken, pool) == NET("10.77.2.0/24")
    with pytest.raises(ConflictError, match="give one with --subnet"):
        subnets.pick_free([NET("10.77.0.0/22")], pool)


def test_addresses_are_handed_out_lowest_first_and_checked_when_asked_for() -> None:
    subnet = NET("10.20.0.0/29")
    assert subnets.gateway_of(subnet) == IPv4Interface("10.20.0.1/29")
    assert subnets.next_address(subnet, []) == IPv4Interface("10.20.0.2/29")
    taken = {IPv4Address(f"10.20.0.{n}"): f"vm{n}" for n in range(2, 7)}
    with pytest.raises(ConflictError, match=r"Every address of 10\.20\.0\.0/29 is taken"):
        subnets.next_address(subnet, taken)
    for address, words in (
        ("10.20.1.5", "not in the network's subnet"),
        ("10.20.0.0", "network or broadcast"),
        ("10.20.0.7", "network or broadcast"),
        ("10.20.0.1", "gateway"),
        ("10.20.0.3", "taken by VM vm3"),
    ):
        with pytest.raises((UserError, ConflictError), match=words):
            subnets.check_address(IPv4Address(address), subnet, taken)


def test_dnsmasq_binds_the_bridge_alone_and_names_its_pidfile() -> None:
    files = DnsmasqFiles(Path("/data/networks/3"))
    command = argv("bglabc3", IPv4Interface("10.20.0.1/24"), "backend", files)
    assert command[0] == "dnsmasq"
    for option in (
        "--bind-interfaces", "--interface=bglabc3", "--listen-address=10.20.0.1",
        "--except-interface=lo", "--conf-file=/dev/null", "--no-hosts",
        "--dhcp-range=10.20.0.0,static,255.255.255.0,infinite",
        "--dhcp-hostsdir=/data/networks/3/hosts.d", "--hostsdir=/data/networks/3/dns.d",
        "--domain=backend", "--local=/backend/", "--expand-hosts",
        "--servers-file=/data/networks/3/servers",
    ):  # fmt: skip
        assert option in command
    # host/processes.py's census finds it by the pidfile its command line names
    cmdline = [arg.encode() for arg in command] + [b""]
    assert _pidfile_of(cmdline) == files.pidfile == Path("/data/networks/3/run/dnsmasq.pid")


def test_host_entries_and_leases_in_dnsmasqs_syntax() -> None:
    entry = HostEntry("vm1", "52:54:00:aa:bb:cc", IPv4Address("10.20.0.2"), "db")
    assert entry.dhcp_line() == "52:54:00:aa:bb:cc,id:*,10.20.0.2,db,infinite\n"
    assert entry.dns_line("backend") == "10.20.0.2 db.backend db\n"
    lease = Lease.parse("0 52:54:00:AA:BB:CC 10.20.0.2 db 01:52:54:00:aa:bb:cc")
    assert lease == Lease("52:54:00:aa:bb:cc", IPv4Address("10.20.0.2"), "db", 0)
    assert Lease.parse("garbage") is None


def _rules(published: list[Published]) -> str:
    nets = [
        BridgedNetwork("bglabc1", NET("10.20.0.0/24")),
        BridgedNetwork("bglabc2", NET("10.21.0.0/24")),
    ]
    return render("bungalow-abc", "bglabc", nets, published)


def test_rules_isolate_networks_and_nat_out_of_each() -> None:
    text = _rules([])
    assert text.startswith("add table inet bungalow-abc\ndelete table inet bungalow-abc\n")
    lines = [line.strip() for line in text.splitlines()]
    same = lines.index('iifname "bglabc1" oifname "bglabc1" accept')
    between = lines.index('iifname "bglabc*" oifname "bglabc*" reject with icmpx admin-prohibited')
    out = lines.index('iifname "bglabc*" accept')
    assert same < between < out
    assert "ip saddr 10.21.0.0/24 ip daddr != 10.21.0.0/24 masquerade" in lines
    assert "policy drop" not in text
    assert render("bungalow-abc", "bglabc", [], []).count("table") == 2  # only the delete


def test_published_ports_are_dnat_from_elsewhere_and_from_the_host() -> None:
    local = Published(IPv4Address("127.0.0.1"), 8080, "tcp", IPv4Address("10.20.0.2"), 80)
    anywhere = Published(IPv4Address("0.0.0.0"), 5353, "udp", IPv4Address("10.20.0.3"), 53)
    text = _rules([local, anywhere])
    pre = text[text.index("chain prerouting") : text.index("chain output")]
    out = text[text.index("chain output") : text.index("chain postrouting")]
    assert "127.0.0.1" not in pre  # nobody else can reach the host's loopback
    assert "fib daddr type local udp dport 5353 dnat ip to 10.20.0.3:53" in pre
    assert "ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.20.0.2:80" in out
    assert 'oifname "bglabc*" ip saddr 127.0.0.0/8 masquerade' in text


def test_nft_accepts_the_rendered_rules() -> None:
    text = _rules([Published(IPv4Address("0.0.0.0"), 1, "tcp", IPv4Address("10.20.0.2"), 2)])
    # --check parses and validates against the kernel without changing anything
    result = subprocess.run(
        ["nft", "--check", "-f", "-"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_hosts_block_is_replaced_and_everything_else_kept(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    assert hostsfile.write_block("bungalow /a", ["10.20.0.2 db.backend"], hosts)
    assert hostsfile.write_block("bungalow /b", ["10.30.0.2 web.front"], hosts)
    assert not hostsfile.write_block("bungalow /a", ["10.20.0.2 db.backend"], hosts)
    assert hostsfile.block("bungalow /a", hosts) == ["10.20.0.2 db.backend"]
    hostsfile.write_block("bungalow /a", [], hosts)
    assert hosts.read_text() == (
        "127.0.0.1 localhost\n# >>> bungalow /b\n10.30.0.2 web.front\n# <<< bungalow /b\n"
    )
