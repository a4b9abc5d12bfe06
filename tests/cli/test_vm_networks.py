"""VMs on private networks, end to end: real bridges, TAPs, dnsmasq, nftables and guests.

Three micro VMs for the module: ``a`` and ``b`` on one network, ``c`` on another
(and ``d``, on both, for one test).
The outside world is a network namespace this module makes (never the internet):
a host on a veth pair the VMs reach only through the host's NAT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Env, _finish, _new_env
from tests.support import free_port, http_get, wait_until

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="private networks need root"),
]

SUFFIX = f"{os.getpid() % 10000}"
NET1, NET2 = f"nicl{SUFFIX}", f"nicr{SUFFIX}"
SUBNET1, SUBNET2 = "10.202.10.0/24", "10.202.11.0/24"
B_ADDRESS = "10.202.10.50"
#: The outside host: a network namespace on a veth pair, outside every VM network.
OUTSIDE_NS, OUTSIDE_HOST, OUTSIDE_PEER = f"nicout{SUFFIX}", "10.202.250.1", "10.202.250.2"
VETH = f"nicvh{SUFFIX}"

#: Answers each connection with the address it came from, then closes it.
ECHO_PEER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode())
    c.close()
"""

#: Connects to HOST PORT and prints "connected" (with "read": what it answers), or the
#: error's name.
GUEST_CONNECT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print(s.recv(100).decode() if sys.argv[4:] == ["read"] else "connected")
except OSError as e:
    print(type(e).__name__)
"""


@dataclass
class Lab:
    env: Env
    host_port: int

    def sh(self, vm: str, command: str) -> str:
        return self.env.run("exec", vm, "--", "sh", "-c", command).stdout.strip()

    def connect(
        self, vm: str, host: str, port: int, timeout: float = 5, *, read: bool = False
    ) -> str:
        argv = ["python3", "-c", GUEST_CONNECT, host, str(port), str(timeout)]
        argv += ["read"] if read else []
        return self.env.run("exec", vm, "--", *argv).stdout.strip()

    def vm_id(self, vm: str) -> str:
        return str(json.loads(self.env.run("inspect", vm).stdout)["id"])

    def eth0(self, vm: str) -> tuple[str, str]:
        """The guest's eth0 MAC and IPv4 address with prefix."""
        out = self.sh(vm, "cat /sys/class/net/eth0/address; ip -4 -o addr show eth0")
        mac, line = out.splitlines()
        return mac, line.split()[3]

    def serve_http(self, vm: str) -> None:
        self.sh(vm, "setsid python3 -m http.server 8000 >/dev/null 2>&1 </dev/null &")


def _outside() -> Iterator[None]:
    subprocess.run(["ip", "netns", "add", OUTSIDE_NS], check=True)
    peer = f"nicvn{SUFFIX}"
    server = None
    try:
        subprocess.run(["ip", "link", "add", VETH, "type", "veth", "peer", "name", peer],
                       check=True)  # fmt: skip
        subprocess.run(["ip", "link", "set", peer, "netns", OUTSIDE_NS], check=True)
        subprocess.run(["ip", "addr", "add", f"{OUTSIDE_HOST}/24", "dev", VETH], check=True)
        subprocess.run(["ip", "link", "set", VETH, "up"], check=True)
        inside = ["ip", "netns", "exec", OUTSIDE_NS]
        subprocess.run([*inside, "ip", "addr", "add", f"{OUTSIDE_PEER}/24", "dev", peer],
                       check=True)  # fmt: skip
        subprocess.run([*inside, "ip", "link", "set", peer, "up"], check=True)
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen([*inside, sys.executable, "-c", ECHO_PEER, OUTSIDE_PEER, "7"])
        yield
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", VETH], check=False)
        subprocess.run(["ip", "netns", "del", OUTSIDE_NS], check=False)


@pytest.fixture(scope="module")
def lab(image_cache: Path) -> Iterator[Lab]:
    env = _new_env()
    outside = _outside()
    next(outside)
    port = free_port()
    try:
        env.run("ls")  # starts the daemon
        env.run("network", "create", NET1, "--subnet", SUBNET1)
        env.run("network", "create", NET2, "--subnet", SUBNET2)
        env.run("launch", "a", "--network", NET1, "-p", f"{port}:8000")
        env.run("launch", "b", "--network", NET1, "--ip", B_ADDRESS)
        env.run("launch", "c", "--network", NET2)
        lab = Lab(env, port)
        lab.serve_http("a")
        yield lab
        ids = [lab.vm_id(vm) for vm in ("a", "b", "c")]
        env.run("rm", "--force", "a", "b", "c")
        env.run("network", "rm", NET1, NET2)
        links = Path("/sys/class/net")
        assert not [vm for vm in ids if (links / f"bt{vm}0").exists()], "a TAP was left"
        assert (
            "dnsmasq"
            not in subprocess.run(
                ["pgrep", "-af", str(env.home)], capture_output=True, text=True
            ).stdout
        )
    finally:
        outside.close()  # runs its clean-up
        _finish(env)


def test_vms_on_one_network_reach_each_other_by_name(lab: Lab) -> None:
    assert lab.sh("a", f"getent hosts b.{NET1}").split()[0] == B_ADDRESS
    a_address = lab.eth0("a")[1].split("/")[0]
    assert lab.sh("b", f"getent hosts a.{NET1}").split()[0] == a_address
    body = lab.sh("b", f"python3 -c \"import urllib.request; print(urllib.request.urlopen("
                       f"'http://a.{NET1}:8000/', timeout=10).status)\"")  # fmt: skip
    assert body == "200"


def test_the_outside_is_reached_through_nat(lab: Lab) -> None:
    # The outside host sees the host's own address: the VM's was masqueraded.
    assert lab.connect("c", OUTSIDE_PEER, 7, read=True) == OUTSIDE_HOST


def test_two_networks_cannot_reach_each_other(lab: Lab) -> None:
    a_address = lab.eth0("a")[1].split("/")[0]
    assert lab.connect("b", a_address, 8000) == "connected"  # same network: it answers
    assert lab.connect("c", a_address, 8000, timeout=3) != "connected"


def test_a_published_port_is_dnat_to_the_first_nic(lab: Lab) -> None:
    body = wait_until("the published port", lambda: http_get(f"http://127.0.0.1:{lab.host_port}/"))
    assert b"Directory listing" in body


def test_stop_and_start_keep_address_and_mac(lab: Lab) -> None:
    before = lab.eth0("b")
    assert before[1] == f"{B_ADDRESS}/24"
    lab.env.run("stop", "b")
    lab.env.run("start", "b")
    assert lab.eth0("b") == before


def test_a_clone_gets_a_new_address_and_name_and_rm_leaves_no_tap(lab: Lab) -> None:
    lab.env.run("clone", "a", "a2")
    clone_id = lab.vm_id("a2")
    mac, address = lab.eth0("a2")
    assert (mac, address) != lab.eth0("a")
    assert lab.sh("a2", "hostname") == "a2"
    assert lab.sh("b", f"getent hosts a2.{NET1}").split()[0] == address.split("/")[0]
    assert Path(f"/sys/class/net/bt{clone_id}0").exists()
    lab.env.run("rm", "--force", "a2")
    assert not Path(f"/sys/class/net/bt{clone_id}0").exists()
    assert lab.sh("b", f"getent hosts a2.{NET1} || echo gone") == "gone"


def test_vms_stay_reachable_after_the_daemon_is_killed(lab: Lab) -> None:
    daemon = lab.env.daemon_pid()
    assert daemon is not None
    os.kill(daemon, 9)
    lab.env.run("ls")  # a new daemon adopts the VMs and the networks
    assert lab.connect("b", f"a.{NET1}", 8000) == "connected"
    assert http_get(f"http://127.0.0.1:{lab.host_port}/") is not None


def test_a_running_vm_is_connected_and_disconnected_live(lab: Lab) -> None:
    out = lab.env.run("network", "connect", "a", NET2).stdout
    assert f"a is on {NET2} as" in out and "now" in out
    address = lab.sh("a", "ip -4 -o addr show eth1").split()[3].split("/")[0]
    assert lab.sh("c", f"getent hosts a.{NET2}").split()[0] == address
    assert lab.connect("c", f"a.{NET2}", 8000) == "connected"
    # a asks NET1's dnsmasq (its first nameserver), which now forwards NET2's names, and
    # the agent added NET2 to a's search list
    c_address = lab.eth0("c")[1].split("/")[0]
    assert lab.sh("a", f"getent hosts c.{NET2}").split()[0] == c_address
    assert lab.sh("a", "getent hosts c").split()[0] == c_address
    refused = lab.env.run("snapshot", "create", "a", "s1", check=False)
    assert refused.returncode != 0 and "connected while it runs" in refused.stderr
    lab.env.run("network", "disconnect", "a", NET2)
    assert "eth1" not in lab.sh("a", "ls /sys/class/net")
    assert lab.connect("c", address, 8000, timeout=3) != "connected"
    booted = lab.env.run("network", "disconnect", "a", NET1, check=False)
    assert booted.returncode != 0 and "stop it" in booted.stderr


def test_a_vm_booted_on_two_networks_resolves_names_on_both(lab: Lab) -> None:
    lab.env.run("launch", "d", "--network", NET2, "--network", NET1)
    try:
        assert lab.sh("d", "sed -n 's/^search //p' /etc/resolv.conf") == f"{NET2} {NET1}"
        # through NET2's dnsmasq, which forwards NET1's names while d is on both
        assert lab.sh("d", f"getent hosts b.{NET1}").split()[0] == B_ADDRESS
        assert lab.sh("d", "getent hosts b").split()[0] == B_ADDRESS
    finally:
        lab.env.run("rm", "--force", "d")


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["launch", "x", "--network", "nosuchnet"], "nosuchnet"),
        (["launch", "x", "--ip", "10.202.10.9"], "add --network"),
        (["launch", "x", "--network", NET1, "--network", NET1], "given twice"),
        (["launch", "x", "--network", f"{NET1}:10.202.99.9"], "10.202.99.9"),
        (["launch", "x", "--network", f"{NET1}:{B_ADDRESS}"], B_ADDRESS),
        (["launch", "x", "--network", "Bad_Name"], "network"),
    ],
)
def test_bad_network_choices_are_refused_and_leave_nothing(
    lab: Lab, args: list[str], sentence: str
) -> None:
    result = lab.env.run(*args, check=False)
    assert result.returncode != 0
    assert sentence in result.stderr and "Traceback" not in result.stderr
    assert "x " not in lab.env.run("ls").stdout
    assert len(lab.env.qemu_pids()) == 3  # a, b and c: no QEMU of x started or left


def test_a_sandbox_on_a_network_has_a_name_there_and_leaves_no_tap(lab: Lab) -> None:
    from bungalow import Sandbox

    with Sandbox(network=NET1, home=lab.env.home) as sandbox:
        nic = sandbox.info()["networks"][0]
        assert nic["network"] == NET1
        vm_id = sandbox.info()["id"]
        assert (
            lab.sh("b", f"getent hosts {sandbox.name}.{NET1}").split()[0]
            == nic["address"].split("/")[0]
        )
        result = sandbox.exec(["getent", "hosts", f"a.{NET1}"])
        assert result.exit_code == 0
    assert not Path(f"/sys/class/net/bt{vm_id}0").exists()
