"""Sprawl on rows a test writes: every kind of finding, its action, and what --apply picks.

The store, the events, the projects, the leases, idleness and the ledger's
prices are the daemon's own; only the rates (metrics.py) and the actions
(which drive QEMU) stand in. tests/cli/test_sprawl.py shows it through the CLI.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bungalow.daemon.policies.idle import Idleness
from bungalow.daemon.policies.leases import Leases
from bungalow.daemon.policies.settings import Action, IdlePolicy, PolicyConfig
from bungalow.daemon.policies.sprawl import Finding, Sprawl
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.telemetry.memory import MemoryCensus, given_back_by_balloon
from bungalow.errors import InvalidStateError
from tests.daemon.conftest import RecordedActions
from tests.daemon.records import GIB, T0, SetClock, put, vm

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
QUIET = {"cpu": 0.01}
CONFIG = PolicyConfig(warn_before=10 * MINUTE, idle=IdlePolicy(after=HOUR))


class Rates(dict[str, dict[str, float]]):
    def __call__(self, name: str) -> dict[str, float]:
        return self.get(name, {})


def _sprawl(
    daemon: Daemon, actions: RecordedActions, rates: Rates | None = None, **config: Any
) -> Sprawl:
    policy = replace(CONFIG, **config)
    clock = daemon.vms.clock
    leases = Leases(daemon.vms, actions, policy, clock)
    idleness = Idleness(daemon.vms, rates or Rates(), actions, policy, clock)
    return Sprawl(daemon.store, leases, idleness, actions, policy, clock, daemon.ledger.price_of)


def _put(daemon: Daemon, name: str, state: VmState = VmState.RUNNING, **changes: Any) -> VmRecord:
    made = len(daemon.store.vms.list())
    return put(daemon.store, vm(name, created=T0 + made, **changes), state)


def _kinds(findings: list[Finding]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in findings:
        found.setdefault(finding.vm, set()).add(finding.kind)
    return found


def _one(findings: list[Finding], name: str, kind: str) -> Finding:
    (finding,) = [f for f in findings if (f.vm, f.kind) == (name, kind)]
    return finding


def test_nothing_is_sprawl_on_a_fresh_host(daemon: Daemon, actions: RecordedActions) -> None:
    _put(daemon, "web")
    _put(daemon, "parked", VmState.STOPPED)
    assert _sprawl(daemon, actions).find() == []


def test_a_lease_is_listed_from_its_warning_and_carried_out_by_the_reaper(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    _put(daemon, "ending", expires_at=T0 + 5 * MINUTE, on_expiry="stop")
    _put(daemon, "ended", expires_at=T0 - 2 * HOUR, on_expiry="snapshot-and-delete")
    _put(daemon, "later", expires_at=T0 + HOUR)
    _put(daemon, "sb", sandbox=True, expires_at=T0 + MINUTE)  # its client's plan: not sprawl
    _put(daemon, "late-sb", sandbox=True, expires_at=T0 - MINUTE)
    found = _sprawl(daemon, actions).find()
    assert _kinds(found) == {
        "ending": {"lease-ending"}, "ended": {"lease-expired"}, "late-sb": {"lease-expired"},
    }  # fmt: skip
    ending = _one(found, "ending", "lease-ending")
    assert (ending.why, ending.action, ending.automatic) == ("its lease ends in 5m", "stop", True)
    assert ending.since == T0 - 5 * MINUTE  # when the warning period began
    ended = _one(found, "ended", "lease-expired")
    assert (ended.why, ended.since, ended.seconds) == ("its lease ended 2h ago", T0 - 2 * HOUR,
                                                       2 * HOUR)  # fmt: skip
    assert ended.action == "snapshot-and-delete"


def test_an_idle_vm_is_listed_with_its_own_action_or_the_sprawl_default(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    rates = Rates(quiet=QUIET, busy={"cpu": 0.9}, asked=QUIET)
    _put(daemon, "quiet")
    _put(daemon, "busy")
    _put(daemon, "asked", idle={"action": "delete"})
    clock.at = T0 + 2 * HOUR
    found = _sprawl(daemon, actions, rates, idle_action=Action.STOP).find()
    assert _kinds(found) == {"quiet": {"idle"}, "asked": {"idle"}}
    quiet = _one(found, "quiet", "idle")
    assert quiet.why == "no CPU, disk, network or exec use for 2h"
    assert (quiet.action, quiet.automatic, quiet.since) == ("stop", False, T0)  # listed only
    asked = _one(found, "asked", "idle")
    assert (asked.action, asked.automatic) == ("delete", True)  # the VM's own word


def test_a_vm_whose_project_was_removed_is_an_orphan_since_the_removal(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    projects = daemon.services.projects
    projects.create("p1")
    _put(daemon, "stray", project="p1")
    _put(daemon, "parked", VmState.STOPPED, project="p1")
    _put(daemon, "lost", project="never-made")  # no removal on record: since it was made
    clock.at = T0 + HOUR
    projects.remove("p1", orphan_vms=True)
    clock.at = T0 + 3 * HOUR
    found = _sprawl(daemon, actions).find()
    assert _kinds(found) == {
        "stray": {"orphan-project"}, "parked": {"orphan-project"}, "lost": {"orphan-project"},
    }  # fmt: skip
    stray = _one(found, "stray", "orphan-project")
    assert (stray.why, stray.since, stray.seconds) == ("its project p1 was removed", T0 + HOUR,
                                                       2 * HOUR)  # fmt: skip
    assert (stray.action, stray.automatic, stray.project) == ("stop", False, "p1")
    assert _one(found, "parked", "orphan-project").action == "none"  # stopped: nothing to stop
    assert _one(found, "lost", "orphan-project").since == T0 + 2


def test_an_owner_unknown_to_the_host_is_an_orphan_only_when_asked(
    daemon: Daemon, actions: RecordedActions
) -> None:
    _put(daemon, "ghosted", owner="ghost-user-4711")
    _put(daemon, "rooted", owner="root")
    assert _sprawl(daemon, actions).find() == []  # owners = any: free text
    found = _sprawl(daemon, actions, owners="local-users").find()
    assert _kinds(found) == {"ghosted": {"orphan-owner"}}
    finding = _one(found, "ghosted", "orphan-owner")
    assert finding.why == "its owner ghost-user-4711 is not a user of this host"
    assert (finding.action, finding.owner) == ("stop", "ghost-user-4711")


def test_a_vm_stopped_long_enough_is_listed_from_its_last_stop(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    _put(daemon, "old", VmState.STOPPED)
    _put(daemon, "failed", VmState.FAILED)
    _put(daemon, "suspended", VmState.SUSPENDED)
    clock.at = T0 + DAY
    daemon.store.events.add("old", "stopped", "stopped")  # its last stop, a day in
    sprawl = _sprawl(daemon, actions)
    clock.at = T0 + 7 * DAY + 10
    assert _kinds(sprawl.find()) == {"failed": {"long-stopped"}, "suspended": {"long-stopped"}}
    clock.at = T0 + 8 * DAY
    found = sprawl.find()
    old = _one(found, "old", "long-stopped")
    assert (old.since, old.why) == (T0 + DAY, "stopped for 7d, holding its disk")
    assert (old.action, old.automatic) == ("snapshot-and-delete", False)
    # 8 days less the 2 s it took to suspend: a span is never shown longer than it is.
    assert _one(found, "suspended", "long-stopped").why.startswith("suspended for 7d")


def test_findings_carry_the_ledgers_cost(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    _put(daemon, "ended", expires_at=T0 - HOUR)  # 2 vCPUs, 4 GiB, 10 GiB of disk, running
    clock.at = T0 + 2 * HOUR
    (finding,) = _sprawl(daemon, actions).find()
    per_hour = 2 * 0.02 + 4 * 0.0025 + 10 * 0.08 / 730  # the default prices (records.Rates)
    assert finding.cost_per_hour == pytest.approx(per_hour)
    assert finding.cost_so_far == pytest.approx(2 * per_hour)
    assert daemon.store.vms.get("ended").disk_size == 10 * GIB


def test_findings_say_what_host_memory_the_vm_really_holds(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    ended = _put(daemon, "ended", expires_at=T0 - HOUR)
    clock.at = T0 + 2 * HOUR
    base = _sprawl(daemon, actions)
    census = MemoryCensus(daemon.vms, given_back_by_balloon)
    assert census.held_by(ended) is None  # its row says running, but it has no QEMU here
    held = {"ended": 180 << 20}
    sprawl = Sprawl(daemon.store, base.leases, base.idleness, actions, base.config, base.clock,
                    held=lambda vm: held.get(vm.name))  # fmt: skip
    (finding,) = sprawl.find()
    assert finding.memory_held == 180 << 20
    assert _sprawl(daemon, actions).find()[0].memory_held is None


def test_a_project_sees_its_own_vms_and_a_pooled_vm_is_listed_as_the_pool_it_is(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    _put(daemon, "mine", project="p1", expires_at=T0 - HOUR)
    _put(daemon, "theirs", project="p2", expires_at=T0 - HOUR)
    _put(daemon, "admins", expires_at=T0 - HOUR)
    _put(daemon, "pooled", pool="t1", expires_at=T0 + 8 * MINUTE, owner="ghost-user-4711")
    daemon.services.projects.create("p1")
    daemon.services.projects.create("p2")
    sprawl = _sprawl(daemon, actions, owners="local-users")
    found = sprawl.find()
    assert set(_kinds(found)) == {"mine", "theirs", "admins", "pooled"}
    assert _kinds(found)["pooled"] == {"pool"}  # nobody's: no lease, owner or idleness of its own
    pooled = _one(found, "pooled", "pool")
    assert "the pool lapses in 8m" in pooled.why
    assert (pooled.action, pooled.automatic) == ("delete", True)
    assert pooled.cost_per_hour is not None and pooled.cost_per_hour > 0  # what it holds
    assert set(_kinds(sprawl.find("p1"))) == {"mine"}


async def test_apply_leaves_a_warm_pool_to_lapse_by_itself(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    _put(daemon, "pooled", pool="t1", expires_at=T0 + 8 * MINUTE)
    assert await _sprawl(daemon, actions).apply() == []
    assert actions.done == []


async def test_apply_takes_each_vms_first_finding_by_precedence(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    rates = Rates(expired=QUIET, ending=QUIET, orphan=QUIET, idle=QUIET)
    daemon.services.projects.create("p1")
    # An expired lease comes before its orphaned project and its idleness.
    _put(daemon, "expired", project="p1", expires_at=T0 + 90 * MINUTE, on_expiry="suspend")
    # A lease still running is the user's word: its idleness is what --apply does.
    _put(daemon, "ending", expires_at=T0 + 8 * DAY + MINUTE, on_expiry="delete")
    _put(daemon, "orphan", project="p1")  # orphan-project comes before idle
    _put(daemon, "idle", idle={"action": "none"})  # the sprawl default for idleness
    _put(daemon, "parked", VmState.STOPPED, project="p1")  # orphan (none) and long-stopped
    daemon.services.projects.remove("p1", orphan_vms=True)
    clock.at = T0 + 8 * DAY
    sprawl = _sprawl(daemon, actions, rates, idle_action=Action.SUSPEND)
    results = await sprawl.apply()
    assert {r["vm"]: r["action"] for r in results} == {
        "expired": "suspend", "ending": "suspend", "orphan": "stop", "idle": "suspend",
        "parked": "snapshot-and-delete",
    }  # fmt: skip
    assert sorted(actions.done) == [
        ("ending", Action.SUSPEND), ("expired", Action.SUSPEND), ("idle", Action.SUSPEND),
        ("orphan", Action.STOP), ("parked", Action.SNAPSHOT_AND_DELETE),
    ]  # fmt: skip
    (event,) = daemon.store.events.query(vm="orphan", kinds=("sprawl",))
    assert event["actor"] == "sprawl --apply"
    assert event["reason"] == "orphan-project: its project p1 was removed"
    assert event["message"] == "did stop: its project p1 was removed"


async def test_apply_reports_a_failure_per_vm_and_goes_on(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    _put(daemon, "stuck", expires_at=T0 - HOUR, on_expiry="stop")
    _put(daemon, "fine", expires_at=T0 - HOUR, on_expiry="stop")
    actions.failing["stuck"] = InvalidStateError("The VM stuck is starting; try again soon.")
    results = await _sprawl(daemon, actions).apply()
    assert results == [
        {"vm": "stuck", "action": "stop", "error": "The VM stuck is starting; try again soon."},
        {"vm": "fine", "action": "stop", "result": "did stop"},
    ]
    assert daemon.store.events.query(vm="stuck", kinds=("sprawl",)) == []
