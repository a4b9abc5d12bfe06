"""Leases in a real daemon with a test clock: warning first, action once, renewal, restarts,
snapshot-and-delete with its way back, and the end of that way back."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Env, _finish, _new_env
from tests.policy_env import events, inspect, move_clock, names, policy_env, wait_for

pytestmark = pytest.mark.vm

MINUTE = 60.0


@pytest.fixture(scope="module")
def env(image_cache: object) -> Iterator[Env]:
    installation = policy_env(_new_env())
    yield installation
    _finish(installation)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


PORT = _free_port()


def test_a_lease_warns_then_acts_once_and_renewal_postpones_it(env: Env) -> None:
    port = PORT
    env.run("launch", "ci-42", "--owner", "alice", "--label", "purpose=ci", "--ttl", "2h",
            "--on-expiry", "snapshot-and-delete", "-p", f"{port}:22")  # fmt: skip
    env.run("exec", "ci-42", "--", "sh", "-c", "echo precious > /root/note && sync")
    move_clock(env, 100 * MINUTE)  # 20m left: no warning yet
    time.sleep(2)
    assert events(env, "ci-42", "lease-warning") == []
    assert "!" not in env.run("ls").stdout

    move_clock(env, 15 * MINUTE)  # 5m left: warned, not acted on
    wait_for("the lease warning", lambda: events(env, "ci-42", "lease-warning"))
    assert "in 4m !" in env.run("ls").stdout or "in 5m !" in env.run("ls").stdout
    assert inspect(env, "ci-42")["state"] == "running"

    env.run("lease", "renew", "ci-42", "1h")
    record = inspect(env, "ci-42")
    assert not record["lease_warned"] and 3500 < record["expires_in"] <= 3600
    move_clock(env, 10 * MINUTE)  # past the first deadline: renewed, so nothing happens
    time.sleep(2)
    assert events(env, "ci-42", "expired") == [] and inspect(env, "ci-42")["state"] == "running"

    move_clock(env, 45 * MINUTE)  # warned again for the new deadline
    wait_for("the second warning", lambda: len(events(env, "ci-42", "lease-warning")) == 2)
    move_clock(env, 6 * MINUTE)
    wait_for("the lease's action", lambda: "ci-42" not in names(env))
    time.sleep(2)  # more reaper ticks: still exactly one action
    expired = events(env, "ci-42", "expired")
    warnings = events(env, "ci-42", "lease-warning")
    assert len(expired) == 1 and expired[0]["id"] > warnings[-1]["id"]
    assert expired[0]["actor"] == "policy lease" and "lease ended" in expired[0]["reason"]
    assert env.qemu_pids() == [] and not _port_taken(port)

    listing = env.run("restore-deleted", "--list").stdout
    assert "ci-42" in listing and "alice" in listing
    env.run("restore-deleted", "ci-42")
    back = inspect(env, "ci-42")
    assert (back["owner"], back["labels"], back["state"]) == ("alice", {"purpose": "ci"}, "running")
    assert back["expires_in"] is None  # it does not expire again at once
    assert env.run("exec", "ci-42", "--", "cat", "/root/note").stdout == "precious\n"
    assert "ci-42" not in env.run("restore-deleted", "--list").stdout
    assert back["ports"] == [f"127.0.0.1:{port}:22/tcp"] and _port_taken(port)


def test_a_restart_loses_no_lease_or_event_and_a_missed_deadline_warns_first(env: Env) -> None:
    env.run("lease", "set", "ci-42", "30m", "--on-expiry", "stop")
    before = events(env, "ci-42")
    deadline = inspect(env, "ci-42")["expires_in"]
    daemon = env.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    time.sleep(0.5)
    move_clock(env, 2 * 3600)  # the deadline passes while no daemon watches

    record = inspect(env, "ci-42")  # a new daemon
    assert record["on_expiry"] == "stop" and record["expires_in"] < deadline - 7000
    assert [e["id"] for e in events(env, "ci-42")][: len(before)] == [e["id"] for e in before]
    warning = wait_for("the late warning", lambda: events(env, "ci-42", "lease-warning"))[-1]
    assert "passed while nobody watched" in warning["message"]
    wait_for("the stop", lambda: inspect(env, "ci-42")["state"] == "stopped")
    stopped = events(env, "ci-42", "expired")[-1]
    assert stopped["id"] > warning["id"] and stopped["time"] - warning["time"] >= 2.0  # grace
    assert inspect(env, "ci-42")["expires_in"] is None


def test_a_deleted_vm_can_come_back_only_within_its_retention(env: Env) -> None:
    env.run("lease", "set", "ci-42", "1m", "--on-expiry", "snapshot-and-delete")
    move_clock(env, 2 * MINUTE)
    wait_for("the snapshot-and-delete", lambda: "ci-42" not in names(env))
    assert "ci-42" in env.run("restore-deleted", "--list").stdout
    assert any((env.home / "snapshots").iterdir())
    with socket.socket() as squatter:  # another program took its host port meanwhile
        squatter.bind(("127.0.0.1", PORT))
        squatter.listen()
        taken = env.run("restore-deleted", "ci-42", check=False)
    assert taken.returncode == 1 and "taken now" in taken.stderr and "ci-42" not in names(env)
    move_clock(env, 8 * 86400)  # past the 7-day retention
    wait_for("the retention's end", lambda: events(env, "ci-42", "retention-ended"))
    assert "ci-42" not in env.run("restore-deleted", "--list").stdout
    assert list((env.home / "snapshots").iterdir()) == []
    refused = env.run("restore-deleted", "ci-42", check=False)
    assert refused.returncode == 1 and "no deleted VM named ci-42" in refused.stderr
