"""Idleness from real guest signals, in a real daemon with a test clock: an idle VM is found
and suspended while a busy one is left alone, and the suspended VM comes back as it was."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Env, _finish, _new_env
from tests.policy_env import api, events, inspect, move_clock, one_sentence, policy_env, wait_for

pytestmark = pytest.mark.vm

SPIN = "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &"


@pytest.fixture(scope="module")
def env(image_cache: object) -> Iterator[Env]:
    installation = policy_env(_new_env())
    yield installation
    _finish(installation)


def _rates(env: Env) -> dict[str, dict[str, float]]:
    with api(env) as client:
        return {m["vm"]: m.get("rates") or {} for m in client.request("GET", "/v1/metrics")}


def test_an_idle_vm_is_suspended_and_a_busy_one_left_alone(env: Env) -> None:
    for name in ("quiet", "busy"):
        env.run("launch", name, "--idle-after", "30m", "--on-idle", "suspend")
    # Kept in the guest's RAM (tmpfs): only a resumed memory image still has it.
    env.run("exec", "quiet", "--", "sh", "-c", "echo in-memory > /tmp/mark")
    env.run("exec", "busy", "--", "sh", "-c", SPIN)
    wait_for(
        "samples showing one VM busy and the other quiet",
        lambda: (r := _rates(env)) and r.get("busy", {}).get("cpu", 0) > 0.5
        and 0 <= r.get("quiet", {}).get("cpu", 1) < 0.05,
    )  # fmt: skip
    move_clock(env, 31 * 60)
    wait_for("the idle VM's suspension", lambda: inspect(env, "quiet")["state"] == "suspended")
    assert inspect(env, "busy")["state"] == "running"
    assert inspect(env, "busy")["quiet_for"] < 60
    suspended = events(env, "quiet", "suspended")[-1]
    assert suspended["actor"] == "policy idle" and "idle for 3" in suspended["reason"]
    assert events(env, "busy", "idle") == [] and len(env.qemu_pids()) == 1  # memory freed

    env.run("start", "quiet")
    assert inspect(env, "quiet")["state"] == "running"
    assert env.run("exec", "quiet", "--", "cat", "/tmp/mark").stdout == "in-memory\n"
    assert inspect(env, "quiet")["quiet_for"] < 60  # woken and used: not idle any more


def test_idle_policy_bad_input_is_one_sentence(env: Env) -> None:
    for args, says in (
        (("idle", "busy", "--cpu", "lots"), "not a CPU share"),
        (("idle", "busy", "--action", "nap"), "unknown"),
        (("idle", "busy", "--after", "0s"), "must be positive"),
        (("launch", "never", "--idle-after", "soon"), "not a duration"),
        (("suspend", "nobody"), "no VM named nobody"),
    ):
        assert says in one_sentence(env.run(*args, check=False)), args
    assert "never" not in env.run("ls", "-q").stdout
    env.run("idle", "busy", "--cpu", "50%", "--action", "stop")
    assert inspect(env, "busy")["idle"] == {"after": 1800.0, "action": "stop", "cpu": 0.5}


def test_a_restart_keeps_when_each_vm_was_last_active(env: Env) -> None:
    before = inspect(env, "quiet")["quiet_for"]
    move_clock(env, 10 * 60)
    daemon = env.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    time.sleep(0.5)
    # The new daemon goes on from what the old one saw: quiet is not "active since now"...
    assert inspect(env, "quiet")["quiet_for"] >= before + 600
    # ...and busy is seen busy again from its first samples, not "idle since the restart".
    wait_for("busy's activity", lambda: inspect(env, "busy")["quiet_for"] < 30)
    assert inspect(env, "quiet")["state"] == "running"  # 10m quiet: under its 30m
