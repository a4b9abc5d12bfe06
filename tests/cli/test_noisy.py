"""A VM hammering the disk while another waits is marked noisy, held to its share, and let go."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Env
from tests.support import wait_until

pytestmark = pytest.mark.vm

# Every request counts as waiting (1 us), so that who waits does not hang on the
# host's disk speed; who is the offender still does: the one issuing most requests.
POLICY = """
[noisy]
policy = "throttle"
disk_wait = 0.000001
samples = 2
calm = 3
"""
HOG = "while :; do dd if=/dev/zero of=/root/hog bs=4k count=64 oflag=dsync 2>/dev/null; done"
QUIET = (
    "while :; do dd if=/dev/zero of=/root/q bs=4k count=1 oflag=dsync 2>/dev/null; sleep 1; done"
)


def _metrics(bw: Env) -> dict[str, dict[str, Any]]:
    return {entry["vm"]: entry for entry in bw.get("/v1/metrics").json()}


def _samples_since(bw: Env, vm: str, moment: float) -> int:
    return sum(s["time"] > moment for s in bw.get(f"/v1/vms/{vm}/metrics").json()["history"])


def _kinds(bw: Env, vm: str) -> list[str]:
    return [event["kind"] for event in json.loads(bw.run("inspect", vm).stdout)["events"]]


def _iops(entry: dict[str, Any]) -> float:
    rates = entry["rates"]
    return float(rates["block_wr_reqs"] + rates["block_rd_reqs"] + rates["block_fl_reqs"])


def test_a_disk_hog_is_held_to_its_share_while_another_waits(bw: Env) -> None:
    (bw.home / "config.toml").write_text((bw.home / "config.toml").read_text() + POLICY)
    bw.run("launch", "hog")
    bw.run("launch", "quiet")
    bw.run("exec", "quiet", "--", "sh", "-c", f"setsid sh -c '{QUIET}' >/dev/null 2>&1 &")
    bw.run("exec", "hog", "--", "sh", "-c", f"setsid sh -c '{HOG}' >/dev/null 2>&1 &")
    wait_until("the hog throttled", lambda: "throttled" in _kinds(bw, "hog"), interval=1)
    assert "noisy" in _kinds(bw, "hog") and "throttled" not in _kinds(bw, "quiet")
    throttled = [e for e in json.loads(bw.run("inspect", "hog").stdout)["events"]
                 if e["kind"] == "throttled"][-1]  # fmt: skip
    assert "disk iops" in throttled["message"] and "quiet wait" in throttled["message"]
    assert throttled["actor"] == "policy noisy"
    cap = int(throttled["message"].split("disk iops ")[1].split(",")[0])
    wait_until(
        "three samples under the cap", lambda: _samples_since(bw, "hog", throttled["time"]) >= 3
    )
    held = _metrics(bw)["hog"]
    assert held["throttled"] == ["disk"]
    assert _iops(held) <= cap * 1.25 + 5, (held["rates"], cap)
    assert "held disk" in bw.run("top", "--once").stdout
    # The VM's own limits are untouched: the cap is the daemon's, not the user's.
    assert "disk_iops" not in json.loads(bw.run("inspect", "hog").stdout)["limits"]
    for vm in ("hog", "quiet"):
        bw.run("exec", vm, "--", "sh", "-c", "pkill -f 'while [:]'; true")
    wait_until("the hog let go", lambda: "unthrottled" in _kinds(bw, "hog"), interval=1)
    assert _metrics(bw)["hog"]["throttled"] == []
