"""One guest's trouble stays its own: a killed QEMU or a fork bomb spares its neighbour,
and a QEMU taken over by its guest runs as a user of its own that can open nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env
from tests.support import wait_until

pytestmark = pytest.mark.vm


def _timed_exec(bw: Env, vm: str) -> float:
    began = time.monotonic()
    assert bw.run("exec", vm, "--", "echo", "here").stdout == "here\n"
    return time.monotonic() - began


def _cpu_seconds(pid: int) -> float:
    """CPU time the process has used (user and system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _attempts_as(uid: int, neighbour_disk: Path, home: Path) -> list[str]:
    """What a process of user ``uid`` (and no group of root's) reaches, from a forked child."""
    tries: dict[str, Callable[[], object]] = {
        "the neighbour's disk": lambda: neighbour_disk.open("rb"),
        "the data directory": lambda: os.listdir(home),
        "the daemon's socket": lambda: socket.socket(socket.AF_UNIX).connect(
            str(home / "bungalowd.sock")
        ),
    }
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        outcomes = []
        for what, attempt in tries.items():
            try:
                attempt()
                outcomes.append(f"reached {what}")
            except PermissionError:
                outcomes.append(f"refused {what}")
        os.write(write_end, "\n".join(outcomes).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as results:
        outcomes = results.read().splitlines()
    os.waitpid(child, 0)
    return outcomes


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def _assert_confined(bw: Env, vm: dict[str, Any], neighbour_pid: int, neighbour_disk: Path) -> None:
    """QEMU runs as its own user, in its run directory, under seccomp; as that user,
    nothing of the neighbour, the data directory or the daemon can be reached."""
    pid = vm["pid"]
    status, other = _status(pid), _status(neighbour_pid)
    uid = int(status["Uid"].split()[0])
    assert uid >= 1_900_000_000 and status["Uid"].split() == [str(uid)] * 4
    assert int(other["Uid"].split()[0]) not in (uid, 0)
    assert status["Groups"].split() == [status["Gid"].split()[0]]
    assert status["Seccomp"].strip() == "2"
    root = Path(os.readlink(f"/proc/{pid}/root"))
    assert root == bw.home / "vms" / vm["id"] / "run"
    assert _attempts_as(uid, neighbour_disk, bw.home) == [
        "refused the neighbour's disk",
        "refused the data directory",
        "refused the daemon's socket",
    ]


def test_a_killed_or_fork_bombed_vm_leaves_its_neighbour_running(bw: Env) -> None:
    bw.run("launch", "victim")
    bw.run("launch", "neighbour")
    victim, neighbour = (json.loads(bw.run("inspect", n).stdout) for n in ("victim", "neighbour"))
    disk = bw.home / "vms" / neighbour["id"] / "disk.qcow2"
    _assert_confined(bw, victim, neighbour["pid"], disk)
    idle = _cpu_seconds(victim["pid"])
    bw.run(
        "exec", "victim", "--", "sh", "-c",
        "setsid sh -c 'b() { b | b & }; b' </dev/null >/dev/null 2>&1 & sleep 1",
        check=False,
    )  # fmt: skip
    # Two seconds of CPU: an idle guest takes minutes to use that much, a fork bomb seconds.
    wait_until(
        "the fork bomb burning the victim's CPU", lambda: _cpu_seconds(victim["pid"]) > idle + 2
    )
    assert _timed_exec(bw, "neighbour") < 10
    pid = json.loads(bw.run("inspect", "victim").stdout)["pid"]
    if pid is not None:  # else the bomb brought its own kernel down: failed all the same
        os.kill(pid, signal.SIGKILL)
    wait_until(
        "the killed VM marked failed",
        lambda: json.loads(bw.run("inspect", "victim").stdout)["state"] == "failed",
        timeout=20,
    )
    assert _timed_exec(bw, "neighbour") < 10
    assert json.loads(bw.run("inspect", "neighbour").stdout)["state"] == "running"
    bw.run("rm", "victim")
    assert len(bw.qemu_pids()) == 1
