"""Noisy neighbours: per-VM control groups keep a CPU hog in its share, and nobody is marked
noisy for it (the detection does not cry wolf)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.conftest import Env

pytestmark = pytest.mark.vm

SPIN = "setsid python3 -c 'while True: pass' </dev/null >/dev/null 2>&1 &"


def _rates(bw: Env, vm: str) -> dict[str, float]:
    transport = httpx.HTTPTransport(uds=str(bw.home / "bungalowd.sock"))
    with httpx.Client(transport=transport, base_url="http://bungalowd") as client:
        entries: list[dict[str, Any]] = client.get("/v1/metrics").json()
    return dict(next(e for e in entries if e["vm"] == vm)["rates"])


def test_a_two_vcpu_hog_cannot_starve_its_neighbour(bw: Env) -> None:
    bw.run("launch", "hog", "--cpus", "2")
    bw.run("launch", "victim")
    bw.run("exec", "victim", "--", "sh", "-c", SPIN)
    bw.run("exec", "hog", "--", "sh", "-c", SPIN + SPIN)
    time.sleep(10)
    victim, hog = _rates(bw, "victim"), _rates(bw, "hog")
    # Each VM's group gets an equal share of the two host CPUs, whatever its vCPU count.
    assert victim["cpu"] > 0.75 and victim["steal"] < 0.2, victim
    assert hog["cpu"] < 1.3, hog
    for vm in ("hog", "victim"):
        kinds = [e["kind"] for e in json.loads(bw.run("inspect", vm).stdout)["events"]]
        assert "noisy" not in kinds, (vm, kinds)
    assert "NOISY" not in bw.run("top", "--once").stdout
