"""One guest's trouble stays its own: a killed QEMU or a fork bomb spares its neighbour."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.conftest import Env

pytestmark = pytest.mark.vm


def _timed_exec(bw: Env, vm: str) -> float:
    began = time.monotonic()
    assert bw.run("exec", vm, "--", "echo", "here").stdout == "here\n"
    return time.monotonic() - began


def test_a_killed_or_fork_bombed_vm_leaves_its_neighbour_running(bw: Env) -> None:
    bw.run("launch", "victim")
    bw.run("launch", "neighbour")
    bw.run(
        "exec", "victim", "--", "sh", "-c",
        "setsid sh -c 'b() { b | b & }; b' </dev/null >/dev/null 2>&1 & sleep 1",
        check=False,
    )  # fmt: skip
    time.sleep(3)
    assert _timed_exec(bw, "neighbour") < 10
    pid = json.loads(bw.run("inspect", "victim").stdout)["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while json.loads(bw.run("inspect", "victim").stdout)["state"] != "failed":
        assert time.monotonic() < deadline, "the killed VM was never marked failed"
        time.sleep(0.5)
    assert _timed_exec(bw, "neighbour") < 10
    assert json.loads(bw.run("inspect", "neighbour").stdout)["state"] == "running"
    bw.run("rm", "victim")
    assert len(bw.qemu_pids()) == 1
