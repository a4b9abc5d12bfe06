"""Noisy neighbours: per-VM control groups keep a CPU hog in its share; a VM that escapes its
group is marked noisy and, with the policy on, put back and throttled."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bungalow.host.cgroups import VmCgroup
from tests.conftest import Env

pytestmark = pytest.mark.vm

SPIN = "setsid python3 -c 'while True: pass' </dev/null >/dev/null 2>&1 &"


def _events(bw: Env, vm: str) -> list[str]:
    return [e["kind"] for e in json.loads(bw.run("inspect", vm).stdout)["events"]]


def _rates(bw: Env, vm: str) -> dict[str, float]:
    transport = httpx.HTTPTransport(uds=str(bw.home / "bungalowd.sock"))
    with httpx.Client(transport=transport, base_url="http://bungalowd") as client:
        entries: list[dict[str, Any]] = client.get("/v1/metrics").json()
    return dict(next(e for e in entries if e["vm"] == vm)["rates"])


def _wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(1)


def test_a_cpu_hog_stays_in_its_share_and_an_escaped_one_is_throttled(bw: Env) -> None:
    (bw.home / "config.toml").write_text("[sandboxes]\npool = 0\n[policy]\nthrottle_noisy = true\n")
    bw.run("launch", "hog", "--cpus", "2")
    bw.run("launch", "victim")
    bw.run("exec", "victim", "--", "sh", "-c", SPIN)
    bw.run("exec", "hog", "--", "sh", "-c", SPIN + SPIN)
    time.sleep(8)
    # Each VM's group gets an equal share: the 2-vCPU hog cannot starve the victim.
    victim = _rates(bw, "victim")
    assert victim["cpu"] > 0.75 and victim["steal"] < 0.2, victim
    assert "noisy" not in _events(bw, "hog") and "noisy" not in _events(bw, "victim")

    # The hog's QEMU escapes its control group (as a process moved by hand would).
    hog = json.loads(bw.run("inspect", "hog").stdout)
    group = VmCgroup(hog["id"])
    if not group.available:
        pytest.skip("this host has no cgroups")
    top = group.directories()[0].parent.parent / "cgroup.procs"
    Path(top).write_text(f"{hog['pid']}\n")
    _wait_for(lambda: "throttled" in _events(bw, "hog"), 60, "the escaped hog was never throttled")
    assert "noisy" in _events(bw, "hog")
    assert json.loads(bw.run("inspect", "hog").stdout)["limits"]["cpu_weight"] == 25
    procs = (group.directories()[0] / "cgroup.procs").read_text().split()
    assert str(hog["pid"]) in procs  # put back in its group
    _wait_for(lambda: _rates(bw, "victim")["cpu"] > 0.75, 30, "the victim did not recover")

    bw.run("exec", "hog", "--", "pkill", "-f", "while True")
    bw.run("exec", "victim", "--", "pkill", "-f", "while True")
    _wait_for(lambda: "unthrottled" in _events(bw, "hog"), 60, "the weight never came back")
    assert json.loads(bw.run("inspect", "hog").stdout)["limits"]["cpu_weight"] == 100
