"""Network bandwidth limits (--net-bw), measured inside real guests against a host server.

The guest reaches the host's loopback as 10.0.2.2 through QEMU's user-mode
network; with a limit its frames pass through the VM's network shaper.
"""

from __future__ import annotations

import json
import os
import signal
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, _processes
from tests.support import free_port, gone, http_get, wait_until

pytestmark = pytest.mark.vm

MIB = 1 << 20

#: Downloads then uploads N bytes through 10.0.2.2 and prints both rates in MiB/s.
GUEST_TRANSFER = """
import socket, sys, time
down_port, up_port, size = map(int, sys.argv[1:4])
s = socket.create_connection(("10.0.2.2", down_port))
s.sendall(b"%d\\n" % size)
began, got = time.time(), 0
while got < size:
    data = s.recv(65536)
    if not data:
        break
    got += len(data)
down = got / (time.time() - began) / 2**20
s = socket.create_connection(("10.0.2.2", up_port))
chunk, sent, began = b"u" * 65536, 0, time.time()
while sent < size:
    s.sendall(chunk)
    sent += len(chunk)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print("%.3f %.3f" % (down, sent / (time.time() - began) / 2**20))
"""


class _Source(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        size = int(self.request.recv(32).strip() or 0)
        self.request.sendall(b"d" * size)


class _Sink(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while self.request.recv(1 << 16):
            pass
        self.request.sendall(b".")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def host_ports() -> Iterator[tuple[int, int]]:
    """A TCP server on the host's 127.0.0.1 that sends, and one that swallows."""
    servers = [_Server(("127.0.0.1", 0), _Source), _Server(("127.0.0.1", 0), _Sink)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield servers[0].server_address[1], servers[1].server_address[1]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def net(bw_module: Env, host_ports: tuple[int, int]) -> tuple[Env, int]:
    """A VM launched with a 1M limit and a port forward; the forward's host port."""
    port = free_port()
    bw_module.run("launch", "shaped", "--net-bw", "1M", "-p", f"{port}:8000")
    return bw_module, port


@pytest.fixture
def own(net: tuple[Env, int]) -> Iterator[list[str]]:
    """Names of the VMs a test makes beside the module's: removed after it, whatever became
    of it, so that a failure leaves no extra VM (and shaper) for the next test to count."""
    names: list[str] = []
    yield names
    for name in names:
        net[0].run("rm", name, check=False)


def _rates(bw: Env, vm: str, ports: tuple[int, int], size: int) -> tuple[float, float]:
    """(download, upload) in MiB/s, measured inside ``vm``."""
    out = bw.run("exec", vm, "--", "python3", "-c", GUEST_TRANSFER, *map(str, (*ports, size)))
    down, up = out.stdout.split()
    return float(down), float(up)


def _shapers(bw: Env, vm: str | None = None) -> list[int]:
    """The network shapers of this installation, or of its VM ``vm``."""
    where = str(bw.home if vm is None else bw.home / "vms" / str(_info(bw, vm)["id"])).encode()
    return [
        pid for pid, _, cmd in _processes() if b"bungalow.host.netshaper" in cmd and where in cmd
    ]


def _info(bw: Env, vm: str) -> dict[str, object]:
    info: dict[str, object] = json.loads(bw.run("inspect", vm).stdout)
    return info


def test_the_limit_is_shown_and_a_shaper_runs(net: tuple[Env, int]) -> None:
    bw, _ = net
    info = _info(bw, "shaped")
    assert info["limits"] == {"cpu_weight": 100, "net_bw": MIB}
    assert info["limits_pending"] == []
    assert len(_shapers(bw)) == 1


def test_each_direction_is_held_to_the_limit_and_changed_live(
    net: tuple[Env, int], host_ports: tuple[int, int]
) -> None:
    bw, _ = net
    down, up = _rates(bw, "shaped", host_ports, 3 * MIB)
    assert 0.7 < down < 1.3 and 0.7 < up < 1.3, (down, up)
    bw.run("set", "shaped", "--net-bw", "2M")
    down2, up2 = _rates(bw, "shaped", host_ports, 5 * MIB)
    assert 1.5 < down2 < 2.5 and 1.5 < up2 < 2.5, (down2, up2)
    bw.run("set", "shaped", "--net-bw", "none")
    free_down, free_up = _rates(bw, "shaped", host_ports, 16 * MIB)
    assert free_down > 4 and free_up > 3, (free_down, free_up)
    bw.run("set", "shaped", "--net-bw", "1M")
    down, up = _rates(bw, "shaped", host_ports, 2 * MIB)
    assert down < 1.3 and up < 1.3, (down, up)


def test_a_port_forward_works_through_the_shaper(net: tuple[Env, int]) -> None:
    bw, port = net
    serve = (
        "mkdir -p /root/www && cd /root/www && echo through-the-shaper > marker && "
        "setsid -f python3 -m http.server 8000 >/dev/null 2>&1"
    )
    bw.run("exec", "shaped", "--", "sh", "-c", serve)
    body = wait_until("the guest's server", lambda: http_get(f"http://127.0.0.1:{port}/marker"), 20)
    assert body.decode().strip() == "through-the-shaper"


def test_a_vm_started_without_a_limit_gets_it_from_its_next_start(
    net: tuple[Env, int], host_ports: tuple[int, int], own: list[str]
) -> None:
    bw, _ = net
    own.append("plain")
    bw.run("launch", "plain")
    assert len(_shapers(bw)) == 1  # only the shaped VM's: an unlimited VM pays nothing
    result = bw.run("set", "plain", "--net-bw", "1M")
    assert "applies from its next start" in result.stdout
    assert _info(bw, "plain")["limits_pending"] == ["net_bw"]
    bw.run("stop", "plain")
    bw.run("start", "plain")
    assert _info(bw, "plain")["limits_pending"] == []
    down, up = _rates(bw, "plain", host_ports, 2 * MIB)
    assert down < 1.3 and up < 1.3, (down, up)
    bw.run("rm", "plain")


def test_a_clone_of_a_limited_vm_has_its_own_shaper(
    net: tuple[Env, int], host_ports: tuple[int, int], own: list[str]
) -> None:
    bw, _ = net
    own.append("copy")
    bw.run("clone", "shaped", "copy")
    assert _info(bw, "copy")["limits"] == {"cpu_weight": 100, "net_bw": MIB}
    assert len(_shapers(bw)) == 2
    down, _ = _rates(bw, "copy", host_ports, 2 * MIB)
    assert 0.7 < down < 1.3, down
    bw.run("rm", "copy")
    assert len(_shapers(bw)) == 1


def test_bad_limits_get_one_sentence_and_leave_nothing(net: tuple[Env, int]) -> None:
    bw, _ = net
    for args, words in (
        (("set", "shaped", "--net-bw", "lots"), '--net-bw "lots" is not valid: give a size'),
        (("set", "shaped", "--net-bw", "1K"), "at least 16K"),
        (("launch", "bad", "--net-bw", "-5M"), '--net-bw "-5M" is not valid: give a size'),
    ):
        result = bw.run(*args, check=False)
        assert result.returncode == 1 and words in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "bad" not in bw.run("ls", "-q").stdout.split()
    assert _info(bw, "shaped")["limits"] == {"cpu_weight": 100, "net_bw": MIB}


def test_a_dead_shaper_is_replaced_also_across_a_daemon_restart(
    net: tuple[Env, int], host_ports: tuple[int, int]
) -> None:
    bw, _ = net
    (first,) = _shapers(bw)
    os.kill(first, signal.SIGKILL)
    wait_until("a new shaper", lambda: len(_shapers(bw)) == 1 and _shapers(bw) != [first], 15)
    daemon = bw.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGTERM)
    wait_until("the daemon's exit", lambda: gone(daemon), 15)
    (second,) = _shapers(bw)  # it outlives the daemon, like QEMU
    os.kill(second, signal.SIGKILL)
    events = json.dumps(_info(bw, "shaped"))  # starts a new daemon, which reattaches
    assert "the network shaper exited; started anew" in events
    assert "exited while bungalowd was away; started anew" in events
    assert len(_shapers(bw)) == 1
    down, up = _rates(bw, "shaped", host_ports, 2 * MIB)
    assert 0.7 < down < 1.3 and 0.7 < up < 1.3, (down, up)


def test_stop_and_rm_leave_no_shaper_behind(net: tuple[Env, int], own: list[str]) -> None:
    bw, _ = net
    own.append("passing")
    bw.run("launch", "passing", "--net-bw", "1M")  # its own: the module's VM stays as it is
    run_dir = Path(bw.home) / "vms" / str(_info(bw, "passing")["id"]) / "run"
    assert len(_shapers(bw, "passing")) == 1
    bw.run("stop", "passing")
    assert _shapers(bw, "passing") == []
    leftovers = {p.name for p in run_dir.iterdir()} & {
        "net-nic.sock", "net-wan.sock", "netshaper.pid", "net-bw", "netshaper.log"
    }  # fmt: skip
    assert not leftovers, leftovers
    bw.run("start", "passing")
    assert len(_shapers(bw, "passing")) == 1
    shaped = _shapers(bw, "shaped")
    bw.run("rm", "passing")
    assert _shapers(bw) == shaped  # only the module's VM's is left
    assert not run_dir.exists()
    assert bw.zombies() == []
