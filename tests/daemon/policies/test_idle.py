"""Idleness on a real store with a hand-set clock: signals, the overlaid policy, who acts.

The rates are what metrics.py would report (a dict the test fills, per VM);
the actions are recorded. test_idle_e2e.py proves the same against real
guests and a real suspend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bungalow.daemon.policies.idle import Idleness
from bungalow.daemon.policies.settings import Action, IdlePolicy, PolicyConfig
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.errors import InvalidStateError, UserError
from tests.daemon.conftest import RecordedActions, build_daemon
from tests.daemon.records import T0, SetClock, put, vm

MINUTE = 60.0
#: What an idle TCG guest shows (about 1% of a CPU), and three ways of being busy.
QUIET = {"cpu": 0.01, "block_rd_bytes": 0.0, "block_wr_bytes": 512.0, "net_rx_bytes": 90.0}
BUSY = {
    "cpu": {**QUIET, "cpu": 0.9},
    "disk": {**QUIET, "block_rd_bytes": 40e3, "block_wr_bytes": 40e3},
    "net": {**QUIET, "net_rx_bytes": 10e3, "net_tx_bytes": 10e3},
}
CONFIG = PolicyConfig(idle=IdlePolicy(after=60 * MINUTE))


class Rates(dict[str, dict[str, float]]):
    """The latest rates per VM, as Metrics.rates answers: {} for a VM not sampled yet."""

    def __call__(self, name: str) -> dict[str, float]:
        return self.get(name, {})


@pytest.fixture
def rates() -> Rates:
    return Rates()


def _idleness(
    daemon: Daemon, rates: Rates, actions: RecordedActions, config: PolicyConfig = CONFIG
) -> Idleness:
    return Idleness(daemon.vms, rates, actions, config, daemon.vms.clock)


def _running(daemon: Daemon, name: str = "web", **changes: Any) -> VmRecord:
    """A running VM made at T0 (a second after the one made before it, for a stable order)."""
    made = len(daemon.store.vms.list())
    return put(daemon.store, vm(name, created=T0 + made, **changes), VmState.RUNNING)


def _idle(idleness: Idleness) -> list[str]:
    return [item.vm.name for item in idleness.idle()]


def test_a_vm_is_idle_when_quiet_now_and_for_its_after(
    daemon: Daemon, rates: Rates, actions: RecordedActions, clock: SetClock
) -> None:
    idleness = _idleness(daemon, rates, actions)
    _running(daemon, "web")
    _running(daemon, "fresh")  # no sample yet: nothing is known of it
    _running(daemon, "pooled", pool="t1")
    put(daemon.store, vm("stopped", created=T0), VmState.STOPPED)
    rates.update(web=QUIET, pooled=QUIET, stopped=QUIET)
    clock.at = T0 + 59 * MINUTE
    assert _idle(idleness) == []
    clock.at = T0 + 60 * MINUTE
    (item,) = idleness.idle()
    assert (item.vm.name, item.since, item.source, item.policy.after) == ("web", T0, "config", 3600)


@pytest.mark.parametrize("signal", sorted(BUSY))
def test_any_busy_signal_keeps_a_vm_from_being_idle(
    daemon: Daemon, rates: Rates, actions: RecordedActions, clock: SetClock, signal: str
) -> None:
    idleness = _idleness(daemon, rates, actions)
    _running(daemon)
    clock.at = T0 + 2 * 60 * MINUTE
    rates["web"] = BUSY[signal]
    assert _idle(idleness) == []
    idleness.observe()
    assert daemon.store.vms.get("web").last_active == clock.at


def test_activity_is_counted_from_the_last_busy_sample(
    daemon: Daemon, rates: Rates, actions: RecordedActions, clock: SetClock
) -> None:
    idleness = _idleness(daemon, rates, actions)
    _running(daemon)
    clock.at = T0 + 50 * MINUTE
    rates["web"] = BUSY["cpu"]
    idleness.observe()
    rates["web"] = QUIET
    idleness.observe()  # a quiet sample moves nothing
    assert daemon.store.vms.get("web").last_active == T0 + 50 * MINUTE
    clock.at = T0 + 109 * MINUTE
    assert _idle(idleness) == []
    clock.at = T0 + 110 * MINUTE
    assert [item.since for item in idleness.idle()] == [T0 + 50 * MINUTE]


def test_when_it_was_last_active_outlives_the_daemon(
    tmp_path: Path, daemon: Daemon, rates: Rates, actions: RecordedActions, clock: SetClock
) -> None:
    _running(daemon)
    clock.at = T0 + 10 * MINUTE
    rates["web"] = BUSY["net"]
    _idleness(daemon, rates, actions).observe()
    daemon.store.close()

    again = build_daemon(tmp_path / "home", clock)  # a new daemon, as after a restart
    clock.at = T0 + 69 * MINUTE
    rates["web"] = QUIET
    restarted = _idleness(again, rates, actions)
    assert _idle(restarted) == []  # not "idle since the daemon's start"...
    clock.at = T0 + 70 * MINUTE
    assert [item.since for item in restarted.idle()] == [T0 + 10 * MINUTE]  # ...nor "active"
    again.store.close()


def test_the_policy_is_the_configs_under_the_projects_under_the_vms(
    daemon: Daemon, rates: Rates, actions: RecordedActions
) -> None:
    idleness = _idleness(daemon, rates, actions)
    daemon.services.projects.create("p1")
    daemon.services.projects.change("p1", {}, {"after": 1800.0, "action": "stop", "cpu": 0.1})
    plain = _running(daemon, "plain")
    in_project = _running(daemon, "member", project="p1", idle={"cpu": 0.2})
    own = _running(daemon, "own", project="p1", idle={"action": "suspend"})
    orphan = _running(daemon, "orphan", project="gone", idle={"after": 60.0})

    assert idleness.policy_for(plain) == (CONFIG.idle, "config")
    policy, source = idleness.policy_for(in_project)
    assert (policy.after, policy.action, policy.cpu, source) == (1800.0, "stop", 0.2, "project")
    assert policy.disk == CONFIG.idle.disk
    policy, source = idleness.policy_for(own)
    assert (policy.after, policy.action, source) == (1800.0, "suspend", "vm")
    policy, source = idleness.policy_for(orphan)
    assert (policy.after, policy.action, source) == (60.0, "none", "config")


async def test_set_policy_merges_what_users_type_and_records_it(
    daemon: Daemon, rates: Rates, actions: RecordedActions
) -> None:
    idleness = _idleness(daemon, rates, actions)
    _running(daemon)
    changed = await idleness.set_policy("web", {"after": "30m", "cpu": "50%", "action": None})
    assert changed.idle == {"after": 1800.0, "cpu": 0.5}
    changed = await idleness.set_policy("web", {"action": "stop"})
    assert changed.idle == {"after": 1800.0, "cpu": 0.5, "action": "stop"}
    assert daemon.store.vms.get("web").idle == changed.idle
    (last,) = daemon.store.events.query(vm="web", kinds=("idle-policy",))[-1:]
    assert last["message"] == "idle policy: action=stop, after=1800, cpu=0.5"
    with pytest.raises(UserError, match="'lots' is not a CPU share"):
        await idleness.set_policy("web", {"cpu": "lots"})
    assert daemon.store.vms.get("web").idle == changed.idle


async def test_the_reaper_acts_only_on_actions_it_may_take_alone(
    daemon: Daemon, rates: Rates, actions: RecordedActions, clock: SetClock
) -> None:
    """Destructive actions only when the VM itself asked; none is never an action."""
    config = PolicyConfig(idle=IdlePolicy(after=60 * MINUTE, action=Action.STOP))
    idleness = _idleness(daemon, rates, actions, config)
    daemon.services.projects.create("p1")
    daemon.services.projects.change("p1", {}, {"action": "delete"})
    _running(daemon, "by-config")  # stop, from the config: automatic
    _running(daemon, "asked", idle={"action": "delete"})  # its own delete: automatic
    _running(daemon, "project", project="p1")  # the project's delete: only listed
    _running(daemon, "never", idle={"action": "none"})
    for name in ("by-config", "asked", "project", "never"):
        rates[name] = QUIET
    clock.at = T0 + 61 * MINUTE
    assert await idleness.tick() == ["by-config", "asked"]
    assert actions.done == [("by-config", Action.STOP), ("asked", Action.DELETE)]
    (event,) = daemon.store.events.query(vm="asked", kinds=("idle",))
    assert event["actor"] == "policy idle"
    assert event["reason"] == "idle for 61m (after 60m, vm)"
    assert event["message"] == "did delete: idle for 61m (after 60m, vm)"


async def test_a_failed_idle_action_leaves_the_others_to_go_on(
    daemon: Daemon, rates: Rates, actions: RecordedActions, clock: SetClock
) -> None:
    config = PolicyConfig(idle=IdlePolicy(after=60 * MINUTE, action=Action.SUSPEND))
    idleness = _idleness(daemon, rates, actions, config)
    for name in ("first", "second"):
        _running(daemon, name)
        rates[name] = QUIET
    actions.failing["first"] = InvalidStateError("Cannot suspend first while it is starting.")
    clock.at = T0 + 61 * MINUTE
    assert await idleness.tick() == ["second"]
    assert actions.done == [("second", Action.SUSPEND)]
    assert daemon.store.events.query(vm="first", kinds=("idle",)) == []
