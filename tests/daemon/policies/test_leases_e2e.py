"""Leases in a real daemon under the test clock: what only a real daemon proves.

The reaper warns and then acts on a real VM (snapshot-and-delete), whose way
back brings it back with its disk, owner, labels and host port; and a daemon
killed past a deadline warns first and acts a grace later when it comes back.
The rules themselves (the warning period, the grace, renewal, one action,
retries, retention) are unit tests: test_leases.py, test_restorable.py,
test_reaper.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Env, _finish, _new_env
from tests.policy_env import events, inspect, move_clock, names, policy_env
from tests.support import free_port, kill, port_taken, wait_until

pytestmark = pytest.mark.vm

MINUTE = 60.0


@pytest.fixture
def env(image_cache: object) -> Iterator[Env]:
    installation = policy_env(_new_env())
    yield installation
    _finish(installation)


def test_the_reaper_warns_then_acts_and_the_vm_can_come_back(env: Env) -> None:
    port = free_port()
    env.run("launch", "ci-42", "--owner", "alice", "--label", "purpose=ci", "--ttl", "2h",
            "--on-expiry", "snapshot-and-delete", "-p", f"{port}:22")  # fmt: skip
    env.run("exec", "ci-42", "--", "sh", "-c", "echo precious > /root/note && sync")
    move_clock(env, 115 * MINUTE)  # 5m left: warned, not acted on
    wait_until("the lease warning", lambda: events(env, "ci-42", "lease-warning"))
    listing = env.run("ls").stdout
    assert "in 4m !" in listing or "in 5m !" in listing
    assert inspect(env, "ci-42")["state"] == "running"

    move_clock(env, 6 * MINUTE)
    wait_until("the lease's action", lambda: "ci-42" not in names(env))
    (expired,) = events(env, "ci-42", "expired")
    assert expired["id"] > events(env, "ci-42", "lease-warning")[-1]["id"]
    assert expired["actor"] == "policy lease" and "lease ended" in expired["reason"]
    assert env.qemu_pids() == [] and not port_taken(port)

    listing = env.run("restore-deleted", "--list").stdout
    assert "ci-42" in listing and "alice" in listing
    env.run("restore-deleted", "ci-42")
    back = inspect(env, "ci-42")
    assert (back["owner"], back["labels"], back["state"]) == ("alice", {"purpose": "ci"}, "running")
    assert back["expires_in"] is None  # it does not expire again at once
    assert env.run("exec", "ci-42", "--", "cat", "/root/note").stdout == "precious\n"
    assert "ci-42" not in env.run("restore-deleted", "--list").stdout
    assert back["ports"] == [f"127.0.0.1:{port}:22/tcp"] and port_taken(port)


def test_a_restart_loses_no_lease_or_event_and_a_missed_deadline_warns_first(env: Env) -> None:
    env.run("launch", "ci", "--ttl", "30m", "--on-expiry", "stop")
    before = events(env, "ci")
    deadline = inspect(env, "ci")["expires_in"]
    daemon = env.daemon_pid()
    assert daemon is not None
    kill(daemon)
    move_clock(env, 2 * 3600)  # the deadline passes while no daemon watches

    record = inspect(env, "ci")  # a new daemon
    assert record["on_expiry"] == "stop" and record["expires_in"] < deadline - 7000
    assert [e["id"] for e in events(env, "ci")][: len(before)] == [e["id"] for e in before]
    warning = wait_until("the late warning", lambda: events(env, "ci", "lease-warning"))[-1]
    assert "passed while nobody watched" in warning["message"]
    wait_until("the stop", lambda: inspect(env, "ci")["state"] == "stopped")
    stopped = events(env, "ci", "expired")[-1]
    assert stopped["id"] > warning["id"] and stopped["time"] - warning["time"] >= 2.0  # grace
    assert inspect(env, "ci")["expires_in"] is None
