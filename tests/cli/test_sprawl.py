"""`bungalow sprawl` through the CLI on a real daemon: a VM orphaned twice over is listed with
why, what would be done and what it costs, and `--apply` really stops it.

Every kind of finding, precedence, long-stopped VMs, events and the project scope are unit
tests (tests/daemon/policies/test_sprawl.py, tests/daemon/api/test_routes.py and
test_access.py); the CLI's own rendering is tests/cli's unit tests'.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import Env, _finish, _new_env
from tests.policy_env import events, inspect, one_sentence, policy_env

pytestmark = pytest.mark.vm


@pytest.fixture
def env(image_cache: object) -> Iterator[Env]:
    installation = policy_env(_new_env(), '[sprawl]\nowners = "local-users"\n')
    yield installation
    _finish(installation)


def _findings(env: Env) -> dict[str, dict[str, dict[str, object]]]:
    """Each VM's findings by kind."""
    found: dict[str, dict[str, dict[str, object]]] = {}
    for finding in json.loads(env.run("sprawl", "--json").stdout):
        found.setdefault(str(finding["vm"]), {})[str(finding["kind"])] = finding
    return found


def test_an_orphan_is_listed_and_stopped_by_apply(env: Env) -> None:
    env.run("project", "create", "p1")
    env.run("launch", "stray", "--project", "p1", "--owner", "ghost-user-4711")
    assert set(_findings(env)["stray"]) == {"orphan-owner"}  # its project is still there
    assert "--orphan-vms" in one_sentence(env.run("project", "rm", "p1", check=False))
    env.run("project", "rm", "p1", "--orphan-vms")

    kinds = _findings(env)["stray"]
    assert set(kinds) == {"orphan-project", "orphan-owner"}
    assert kinds["orphan-project"]["why"] == "its project p1 was removed"
    assert kinds["orphan-project"]["action"] == "stop" and not kinds["orphan-project"]["automatic"]
    # 1 vCPU and 512M running, a 4G disk, at the default prices (costs.py).
    assert kinds["orphan-project"]["cost_per_hour"] == pytest.approx(
        0.02 + 0.5 * 0.0025 + 4 * 0.08 / 730, rel=1e-3
    )
    table = env.run("sprawl").stdout
    assert "orphan-project" in table and "ghost-user-4711" in table

    applied = json.loads(env.run("sprawl", "--apply", "--json").stdout)
    assert [(r["vm"], r["action"], r["result"]) for r in applied] == [("stray", "stop", "stopped")]
    assert inspect(env, "stray")["state"] == "stopped"
    stopped = events(env, "stray", "stopped")[-1]
    assert stopped["actor"] == "sprawl --apply" and "orphan-project" in stopped["reason"]
    env.run("start", "stray")  # an orphan still starts: no quota of a gone project applies
    assert inspect(env, "stray")["state"] == "running"
