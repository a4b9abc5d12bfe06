"""`bungalow sprawl`, `events` and orphans through the CLI, with a test clock in the daemon."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import Env, _finish, _new_env
from tests.policy_env import api, events, inspect, move_clock, names, one_sentence, policy_env

pytestmark = pytest.mark.vm

DAY = 86400.0


@pytest.fixture(scope="module")
def env(image_cache: object) -> Iterator[Env]:
    installation = policy_env(_new_env(), '[sprawl]\nowners = "local-users"\n')
    yield installation
    _finish(installation)


def _findings(env: Env) -> dict[str, list[dict[str, object]]]:
    found: dict[str, list[dict[str, object]]] = {}
    for finding in json.loads(env.run("sprawl", "--json").stdout):
        found.setdefault(str(finding["vm"]), []).append(finding)
    return found


def test_orphans_and_long_stopped_vms_are_listed_and_applied(env: Env) -> None:
    env.run("project", "create", "p1")
    env.run("launch", "stray", "--project", "p1", "--owner", "ghost-user-4711")
    assert "No sprawl" in env.run("sprawl").stdout or "orphan-owner" in env.run("sprawl").stdout
    assert "--orphan-vms" in one_sentence(env.run("project", "rm", "p1", check=False))
    env.run("project", "rm", "p1", "--orphan-vms")

    kinds = {f["kind"]: f for f in _findings(env)["stray"]}
    assert set(kinds) == {"orphan-project", "orphan-owner"}
    assert kinds["orphan-project"]["why"] == "its project p1 was removed"
    assert kinds["orphan-project"]["action"] == "stop" and not kinds["orphan-project"]["automatic"]
    # 1 vCPU and 512M running, a 4G disk, at the default prices (costs.py).
    assert kinds["orphan-project"]["cost_per_hour"] == pytest.approx(
        0.02 + 0.5 * 0.0025 + 4 * 0.08 / 730, rel=1e-3
    )
    table = env.run("sprawl").stdout
    assert "orphan-project" in table and "ghost-user-4711" in table

    applied = env.run("sprawl", "--apply").stdout
    assert "stray: stopped" in applied
    assert inspect(env, "stray")["state"] == "stopped"
    stopped = events(env, "stray", "stopped")[-1]
    assert stopped["actor"] == "sprawl --apply" and "orphan-project" in stopped["reason"]

    move_clock(env, 8 * DAY)  # stopped for longer than stopped_after (7d)
    kinds = {f["kind"]: f for f in _findings(env)["stray"]}
    assert kinds["long-stopped"]["action"] == "snapshot-and-delete"
    assert "stopped for 8d" in str(kinds["long-stopped"]["why"])
    env.run("start", "stray")  # an orphan still starts: no quota of a gone project applies
    env.run("stop", "stray")
    move_clock(env, 8 * DAY)
    assert "stray: saved and deleted" in env.run("sprawl", "--apply").stdout
    assert "stray" not in names(env) and "stray" in env.run("restore-deleted", "--list").stdout
    log = env.run("events", "--since", "1h").stdout
    assert "snapshot-and-delete" in log and "sprawl --apply" in log
    assert "stray" not in env.run("events", "--since", "1h", "--vm", "nobody").stdout


def test_events_since_a_date_and_for_one_vm(env: Env) -> None:
    every = json.loads(env.run("events", "--json", "--since", "2020-01-01").stdout)
    assert {"actor", "reason", "kind", "message", "time"} <= set(every[0])
    kinds = [e["kind"] for e in every if e["vm"] == "stray"]
    assert kinds[0] == "created" and "snapshot-and-delete" in kinds
    assert json.loads(env.run("events", "--json", "--since", "2999-01-01").stdout) == []


def test_bad_input_is_one_sentence_and_leaves_nothing(env: Env) -> None:
    env.run("launch", "plain")
    for args, says in (
        (("lease", "renew", "plain", "1h"), "has no lease to renew"),
        (("lease", "renew", "ghost", "1h"), "no VM named ghost"),
        (("lease", "set", "plain", "tomorrow"), "not a duration"),
        (("lease", "set", "plain", "1h", "--on-expiry", "explode"), "unknown"),
        (("launch", "bad", "--ttl", "-2h"), "not a duration"),
        (("launch", "bad", "--ttl", "0s"), "must be positive"),
        (("launch", "bad", "--on-expiry", "delete"), "needs a lease"),
        (("launch", "bad", "--on-idle", "vanish"), "unknown"),
        (("events", "--since", "last tuesday"), "neither a date nor a duration"),
        (("restore-deleted", "ghost"), "no deleted VM named ghost"),
        (("project", "set", "nope", "--on-idle", "stop"), "no project named nope"),
        (("start", "stray"), "no VM named stray"),
    ):
        assert says in one_sentence(env.run(*args, check=False)), args
    assert sorted(names(env)) == ["plain"]
    assert inspect(env, "plain")["expires_in"] is None


def test_a_project_token_sees_only_its_own_events_and_sprawl(env: Env) -> None:
    token = env.run("project", "create", "p2", "--max-vms", "2").stdout.strip()
    member = Env(env.home)
    member.env = {**env.env, "BUNGALOW_TOKEN": token}
    member.run("launch", "mine", "--ttl", "5m")
    member.run("rm", "mine")
    seen = json.loads(member.run("events", "--json").stdout)
    assert {e["vm"] for e in seen} == {"mine"}  # its removed VM's too, nobody else's
    assert [e["actor"] for e in seen if e["kind"] == "removed"] == ["project p2"]
    assert json.loads(member.run("sprawl", "--json").stdout) == []
    env.run("project", "set", "p2", "--idle-after", "2h", "--on-idle", "delete", "--idle-cpu", "2%")
    with api(env) as client:
        (p2,) = [p for p in client.request("GET", "/v1/projects") if p["name"] == "p2"]
    assert p2["idle"] == {"after": 7200.0, "action": "delete", "cpu": 0.02}
    env.run("project", "rm", "p2")
    admin_sees = {e["vm"] for e in json.loads(env.run("events", "--json", "-n", "1000").stdout)}
    assert "mine" in admin_sees and len(admin_sees) > 1
