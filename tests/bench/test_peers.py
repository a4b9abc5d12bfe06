"""bench/peers.py's pure parts: the libvirt XML it hands virsh, and what it reads back.

The samples are real output: iperf3 3.12's ``-J`` report, iputils ping's summary,
``ip -4 -o addr``, ``ldd /usr/bin/iperf3`` on Debian 12, and qemu-guest-agent's
replies as ``virsh qemu-agent-command`` prints them.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _libvirt import (
    DomainSpec,
    domain_xml,
    network_xml,
    parse_agent_reply,
    parse_exec_status,
)
from _support import BenchFailed
from peers import (
    libvirt_cmdline,
    median_ratio,
    parse_address,
    parse_iperf,
    parse_ldd,
    parse_rtt,
)

from bungalow.daemon.vms.boot import server_words

SPEC = DomainSpec(
    name="peer-lv-0",
    memory_mib=512,
    cpus=1,
    kernel=Path("/images/x/vmlinux"),
    initrd=Path("/images/x/initrd-1.img"),
    cmdline="console=ttyS0 root=/dev/vda bungalow.init=systemd",
    disk=Path("/tmp/bgw-bench-libvirt-x/peer-lv-0.qcow2"),
    network="peer-lv",
    console_log=Path("/tmp/bgw-bench-libvirt-x/peer-lv-0.console"),
    user=(64055, 108),
    tb_cache_mib=64,
)


def test_domain_is_a_tcg_q35_direct_kernel_boot_of_the_spec() -> None:
    domain = ET.fromstring(domain_xml(SPEC))
    assert domain.get("type") == "qemu"
    assert domain.findtext("name") == "peer-lv-0"
    assert domain.find("memory").get("unit") == "MiB" and domain.findtext("memory") == "512"
    assert domain.findtext("vcpu") == "1"
    machine = domain.find("os/type")
    assert (machine.get("machine"), machine.text) == ("q35", "hvm")
    assert domain.findtext("os/kernel") == "/images/x/vmlinux"
    assert domain.findtext("os/initrd") == "/images/x/initrd-1.img"
    assert domain.findtext("os/cmdline") == SPEC.cmdline
    assert domain.find("features/tcg/tb-cache").text == "64"
    assert domain.find("cpu").get("mode") == "maximum"


def test_domain_runs_qemu_as_the_user_given_and_relabels_nothing() -> None:
    label = ET.fromstring(domain_xml(SPEC)).find("seclabel")
    assert (label.get("type"), label.get("model"), label.get("relabel")) == (
        "static",
        "dac",
        "no",
    )
    assert label.findtext("label") == "+64055:+108"


def test_domain_devices_are_disk_nic_serial_agent_and_rng_only() -> None:
    devices = ET.fromstring(domain_xml(SPEC)).find("devices")
    disk = devices.find("disk")
    assert disk.find("source").get("file") == str(SPEC.disk)
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    nic = devices.find("interface")
    assert nic.get("type") == "network" and nic.find("source").get("network") == "peer-lv"
    assert nic.find("model").get("type") == "virtio"
    assert devices.find("serial/source").get("path") == str(SPEC.console_log)
    assert devices.find("channel/target").get("name") == "org.qemu.guest_agent.0"
    assert devices.find("controller").attrib == {"type": "usb", "model": "none"}
    assert devices.find("memballoon").get("model") == "none"
    assert [child.tag for child in devices] == [
        "disk", "interface", "serial", "channel", "controller", "memballoon", "rng",
    ]  # fmt: skip


def test_domain_without_a_tb_cache_leaves_qemu_its_default() -> None:
    spec = DomainSpec(**{**SPEC.__dict__, "tb_cache_mib": None})
    assert ET.fromstring(domain_xml(spec)).find("features/tcg") is None


def test_network_is_a_bridge_with_dhcp_and_no_firewall() -> None:
    subnet = ipaddress.IPv4Network("10.204.1.0/24")
    network = ET.fromstring(network_xml("peer-lv", "peerlv0", subnet))
    assert network.findtext("name") == "peer-lv"
    assert network.find("forward").get("mode") == "open"
    assert network.find("bridge").get("name") == "peerlv0"
    ip = network.find("ip")
    assert (ip.get("address"), ip.get("prefix")) == ("10.204.1.1", "24")
    assert network.find("ip/dhcp/range").attrib == {"start": "10.204.1.2", "end": "10.204.1.254"}


def test_network_refuses_a_subnet_too_small_for_two_vms() -> None:
    with pytest.raises(ValueError, match="too few addresses"):
        network_xml("peer-lv", "peerlv0", ipaddress.IPv4Network("10.204.1.0/30"))


def test_agent_reply_gives_its_return_and_refuses_what_is_not_one() -> None:
    assert parse_agent_reply('{"return":{"pid":412}}\n') == {"pid": 412}
    with pytest.raises(BenchFailed, match="not JSON"):
        parse_agent_reply("error: failed to get domain 'x'")
    with pytest.raises(BenchFailed, match="no return"):
        parse_agent_reply('{"error":{"class":"GenericError","desc":"x"}}')


def test_exec_status_decodes_output_and_shows_a_signal_as_a_shell_does() -> None:
    out = base64.b64encode(b"running\n").decode()
    status = parse_exec_status({"exited": True, "exitcode": 0, "out-data": out})
    assert (status.exited, status.exit_code, status.stdout, status.stderr) == (
        True,
        0,
        b"running\n",
        b"",
    )
    killed = parse_exec_status({"exited": True, "signal": 9})
    assert killed.exit_code == 137
    assert parse_exec_status({"exited": False}).exit_code is None
    with pytest.raises(BenchFailed):
        parse_exec_status([1, 2])


IPERF_REPORT = {
    "start": {"connected": [{"remote_host": "10.204.1.5"}]},
    "end": {
        "sum_sent": {"bytes": 380108800, "bits_per_second": 1013623291.1},
        "sum_received": {"bytes": 379912192, "bits_per_second": 1012867522.3},
    },
}


def test_iperf_gives_what_the_receiver_saw() -> None:
    assert parse_iperf(json.dumps(IPERF_REPORT)) == pytest.approx(1012867522.3)


def test_iperf_error_and_garbage_are_refused_with_its_words() -> None:
    refused = {"start": {}, "end": {}, "error": "unable to connect to server: Connection refused"}
    with pytest.raises(BenchFailed, match="Connection refused"):
        parse_iperf(json.dumps(refused))
    with pytest.raises(BenchFailed, match="not JSON"):
        parse_iperf("iperf3: error - unable to connect")


PING = """\
PING 10.204.1.5 (10.204.1.5) 56(84) bytes of data.

--- 10.204.1.5 ping statistics ---
5 packets transmitted, 5 received, 0% packet loss, time 812ms
rtt min/avg/max/mdev = 0.412/0.871/1.903/0.532 ms
"""


def test_rtt_is_pings_average() -> None:
    assert parse_rtt(PING) == pytest.approx(0.871)


def test_rtt_without_a_summary_is_refused() -> None:
    lost = PING.split("rtt")[0].replace("5 received, 0%", "0 received, 100%")
    with pytest.raises(BenchFailed, match="no round-trip summary"):
        parse_rtt(lost)


def test_address_is_the_one_in_the_subnet() -> None:
    text = (
        "2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0\\       valid_lft forever\n"
        "2: eth0    inet 10.204.2.37/24 metric 1024 brd 10.204.2.255 scope global dynamic eth0\n"
    )
    subnet = ipaddress.IPv4Network("10.204.2.0/24")
    assert parse_address(text, subnet) == "10.204.2.37"
    assert parse_address(text.splitlines()[0], subnet) is None
    assert parse_address("", subnet) is None


LDD = """\
\tlinux-vdso.so.1 (0x00007ffd5cbd9000)
\tlibiperf.so.0 => /lib/x86_64-linux-gnu/libiperf.so.0 (0x00007f691c012000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f691be30000)
\tlibcrypto.so.3 => /lib/x86_64-linux-gnu/libcrypto.so.3 (0x00007f691b800000)
\tlibsctp.so.1 => /lib/x86_64-linux-gnu/libsctp.so.1 (0x00007f691be2a000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f691bd4a000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f691c05c000)
"""


def test_ldd_gives_the_libraries_beyond_glibc() -> None:
    assert [path.name for path in parse_ldd(LDD)] == [
        "libiperf.so.0",
        "libcrypto.so.3",
        "libsctp.so.1",
    ]
    assert parse_ldd("\tlibfoo.so.1 => not found\n") == []


def test_cmdline_hands_over_to_systemd_with_the_tsc_hint_only_when_known() -> None:
    words = libvirt_cmdline(2596122).split()
    assert {"bungalow.init=systemd", "root=/dev/vda", "console=ttyS0"} <= set(words)
    assert "bungalow.hostname={name}" in words
    assert {"tsc_early_khz=2596122", "tsc=reliable"} <= set(words)
    assert not any(word.startswith("tsc") for word in libvirt_cmdline(0).split())


def test_cmdline_hands_over_as_bungalow_does_for_a_server_image() -> None:
    assert set(server_words(None)) <= set(libvirt_cmdline(0).split())


def test_median_ratio_is_ours_over_theirs_and_na_without_theirs() -> None:
    assert median_ratio([1.0, 3.0, 2.0], [4.0, 4.0, 5.0]) == (2.0, 4.0, "0.50")
    assert median_ratio([1.0], [0.0])[2] == "n/a"
