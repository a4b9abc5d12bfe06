"""Leases on a real store with a hand-set clock: terms, renewal, warnings, the action once.

The VM service is the daemon's own (no VM boots: a lease only reads and writes
rows); the actions are recorded instead of carried out (PolicyActions drives
QEMU, and the e2e test in test_leases_e2e.py proves that wiring).
"""

from __future__ import annotations

from typing import Any

import pytest

from bungalow.daemon.policies.leases import RETRY_AFTER, Leases
from bungalow.daemon.policies.settings import Action, PolicyConfig
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.errors import InvalidStateError, UserError, VmNotFoundError
from tests.daemon.conftest import RecordedActions
from tests.daemon.records import T0, SetClock, put, vm

MINUTE = 60.0
HOUR = 3600.0
CONFIG = PolicyConfig(warn_before=10 * MINUTE, grace=MINUTE, on_expiry=Action.STOP)


@pytest.fixture
def leases(daemon: Daemon, actions: RecordedActions, clock: SetClock) -> Leases:
    return Leases(daemon.vms, actions, CONFIG, clock)


def _running(daemon: Daemon, name: str = "web", **changes: Any) -> VmRecord:
    return put(daemon.store, vm(name, created=T0, **changes), VmState.RUNNING)


def _events(daemon: Daemon, name: str, kind: str) -> list[dict[str, Any]]:
    return daemon.store.events.query(vm=name, kinds=(kind,))


# -- terms -----------------------------------------------------------------------------------


def test_launch_terms_date_the_deadline_by_the_daemons_clock(leases: Leases) -> None:
    assert leases.launch_terms("2h", None) == (T0 + 2 * HOUR, Action.STOP)  # the default
    assert leases.launch_terms(90, "delete") == (T0 + 90, Action.DELETE)
    assert leases.launch_terms(None, None) == (None, Action.DELETE)


@pytest.mark.parametrize(
    ("ttl", "on_expiry", "says"),
    [
        (None, "stop", "--on-expiry needs a lease"),
        ("-2h", None, "not a duration"),
        ("0s", None, "must be positive"),
        ("soon", None, "not a duration"),
        ("1h", "explode", "'explode' is unknown"),
        ("1h", "none", "'none' is unknown"),
        ("99999999999d", None, "longer than 100 years"),
        ("99999999999999999999999d", None, "longer than 100 years"),
    ],
)
def test_bad_launch_terms_are_one_sentence(
    leases: Leases, ttl: str | None, on_expiry: str | None, says: str
) -> None:
    with pytest.raises(UserError, match=says) as refused:
        leases.launch_terms(ttl, on_expiry)
    assert refused.value.message.endswith(".") and "\n" not in refused.value.message


async def test_set_starts_a_lease_from_now_keeps_its_action_and_none_drops_it(
    leases: Leases, daemon: Daemon
) -> None:
    _running(daemon)
    first = await leases.set("web", "1h")
    assert (first.expires_at, first.on_expiry) == (T0 + HOUR, "stop")  # the config's default
    changed = await leases.set("web", "30m", "delete")
    assert (changed.expires_at, changed.on_expiry) == (T0 + 30 * MINUTE, "delete")
    kept = await leases.set("web", "2h")
    assert (kept.expires_at, kept.on_expiry) == (T0 + 2 * HOUR, "delete")  # the lease's own
    dropped = await leases.set("web", None)
    assert (dropped.expires_at, dropped.on_expiry) == (None, "delete")
    messages = [e["message"] for e in _events(daemon, "web", "lease")]
    assert len(messages) == 4 and messages[-1] == "lease dropped"
    assert messages[0].startswith("lease ends ") and messages[0].endswith(", then stop")


async def test_a_sandbox_keeps_its_delete_when_its_timeout_is_moved(
    leases: Leases, daemon: Daemon
) -> None:
    _running(daemon, "sb", sandbox=True, on_expiry="delete", expires_at=T0 + 60)
    assert (await leases.set("sb", 600)).on_expiry == "delete"


async def test_bad_lease_changes_are_refused_and_write_nothing(
    leases: Leases, daemon: Daemon
) -> None:
    _running(daemon)
    with pytest.raises(UserError, match="has no lease to renew; give it one with"):
        await leases.renew("web", "1h")
    with pytest.raises(UserError, match="'tomorrow' is not a duration"):
        await leases.set("web", "tomorrow")
    with pytest.raises(UserError, match="'explode' is unknown"):
        await leases.set("web", "1h", "explode")
    with pytest.raises(UserError, match="longer than 100 years"):
        await leases.set("web", "99999999999999d")  # was an OSError from localtime, and kept
    with pytest.raises(VmNotFoundError, match="no VM named ghost"):
        await leases.set("ghost", "1h")
    assert daemon.store.vms.get("web").expires_at is None
    assert _events(daemon, "web", "lease") == []


async def test_a_renewal_clears_the_warning_and_postpones_the_action(
    leases: Leases, daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    web = _running(daemon, expires_at=T0 + HOUR, on_expiry="delete")
    clock.at = T0 + 55 * MINUTE
    await leases.tick()
    assert daemon.store.vms.get("web").lease_warned == T0 + 55 * MINUTE
    renewed = await leases.renew("web", "1h")
    assert (renewed.expires_at, renewed.lease_warned) == (T0 + 115 * MINUTE, None)
    assert renewed.on_expiry == "delete"

    clock.at = T0 + 70 * MINUTE  # past the first deadline, 45m before the new one
    assert await leases.tick() == []
    assert len(_events(daemon, "web", "lease-warning")) == 1
    clock.at = T0 + 106 * MINUTE  # the new deadline warns anew
    await leases.tick()
    assert len(_events(daemon, "web", "lease-warning")) == 2
    clock.at = T0 + 115 * MINUTE
    assert await leases.tick() == ["web"]
    assert actions.done == [("web", Action.DELETE)]
    assert daemon.store.vms.by_id(web.id) is not None  # the action is the service's to do


# -- the reaper's side -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "due"),
    [
        ({}, None),  # no lease
        ({"expires_at": T0}, None),  # not warned yet: never acted on unwarned
        ({"expires_at": T0, "lease_warned": T0 - 5 * MINUTE}, T0),  # warned in time
        ({"expires_at": T0, "lease_warned": T0 + HOUR}, T0 + HOUR + MINUTE),  # late: grace
        ({"expires_at": T0, "sandbox": True}, T0),  # a sandbox: to the second, no warning
    ],
)
def test_action_time(leases: Leases, changes: dict[str, Any], due: float | None) -> None:
    assert leases.action_time(vm(**changes)) == due


def test_next_due_is_the_soonest_warning_or_action(leases: Leases, daemon: Daemon) -> None:
    assert leases.next_due() is None
    _running(daemon, "later", expires_at=T0 + HOUR)
    assert leases.next_due() == T0 + HOUR - CONFIG.warn_before  # its warning
    _running(daemon, "warned", expires_at=T0 + 20, lease_warned=T0 + 15)
    assert leases.next_due() == T0 + 15 + CONFIG.grace  # its action, a grace after the warning
    _running(daemon, "sb", sandbox=True, expires_at=T0 + 30)
    assert leases.next_due() == T0 + 30


async def test_a_lease_warns_before_its_deadline_then_acts_once(
    leases: Leases, daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    web = _running(daemon, expires_at=T0 + 2 * HOUR, on_expiry="stop")
    clock.at = T0 + 100 * MINUTE  # 20m left: nothing yet
    assert await leases.tick() == []
    assert _events(daemon, "web", "lease-warning") == []

    clock.at = T0 + 115 * MINUTE  # 5m left: the warning, not the action
    assert await leases.tick() == []
    (warning,) = _events(daemon, "web", "lease-warning")
    assert warning["message"].startswith("the lease ends in 5m; then stop")
    assert "bungalow lease renew web" in warning["message"]
    assert warning["actor"] == "policy lease"
    assert daemon.store.vms.get("web").lease_warned == T0 + 115 * MINUTE
    await leases.tick()
    assert len(_events(daemon, "web", "lease-warning")) == 1  # warned once
    assert actions.done == []

    clock.at = T0 + 2 * HOUR  # the deadline
    assert await leases.tick() == ["web"]
    assert actions.done == [("web", Action.STOP)]
    (expired,) = _events(daemon, "web", "expired")
    assert expired["actor"] == "policy lease" and "lease ended" in expired["reason"]
    assert expired["message"].startswith("did stop: its lease ended")
    assert daemon.store.vms.get("web").expires_at is None  # done with: the lease is cleared
    clock.at += HOUR
    assert await leases.tick() == []
    assert actions.done == [("web", Action.STOP)]  # once
    assert daemon.store.vms.by_id(web.id) is not None


async def test_a_deadline_missed_unwatched_warns_first_and_acts_a_grace_later(
    leases: Leases, daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    _running(daemon, expires_at=T0 + 30 * MINUTE, on_expiry="stop")
    clock.at = T0 + 2 * HOUR  # no tick saw the lease end: the daemon was down
    assert await leases.tick() == []
    (warning,) = _events(daemon, "web", "lease-warning")
    assert "now (it passed while nobody watched)" in warning["message"]
    clock.at += CONFIG.grace - 1
    assert await leases.tick() == []
    clock.at += 1
    assert await leases.tick() == ["web"]
    assert actions.done == [("web", Action.STOP)]


async def test_a_failed_action_is_reported_once_and_retried_after_a_pause(
    leases: Leases, daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    _running(daemon, expires_at=T0, lease_warned=T0 - HOUR, on_expiry="stop")
    actions.failing["web"] = InvalidStateError("The VM web is starting; try again soon.")
    assert await leases.tick() == []
    assert await leases.tick() == []  # not again at once
    clock.at += RETRY_AFTER
    assert await leases.tick() == []
    (failed,) = _events(daemon, "web", "lease-failed")  # the failure is one event, not many
    assert failed["message"] == "The VM web is starting; try again soon. (retrying)"
    assert daemon.store.vms.get("web").expires_at == T0  # still due

    del actions.failing["web"]
    assert await leases.tick() == []  # the next try waits its turn
    clock.at += RETRY_AFTER
    assert await leases.tick() == ["web"]
    assert actions.done == [("web", Action.STOP)]
    assert daemon.store.vms.get("web").expires_at is None


async def test_a_sandbox_is_acted_on_to_the_second_without_a_warning(
    leases: Leases, daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    _running(daemon, "sb", sandbox=True, on_expiry="delete", expires_at=T0 + 30)
    clock.at = T0 + 29.5
    assert await leases.tick() == []
    clock.at = T0 + 30
    assert await leases.tick() == ["sb"]
    assert actions.done == [("sb", Action.DELETE)]
    assert _events(daemon, "sb", "lease-warning") == []
    (expired,) = _events(daemon, "sb", "expired")
    assert expired["message"] == "did delete: its timeout passed"


async def test_pooled_vms_wait_for_their_claim(
    leases: Leases, daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    _running(daemon, "pooled", pool="t1", expires_at=T0 - HOUR, lease_warned=T0 - 2 * HOUR)
    _running(daemon, "warm", pool="t1", expires_at=T0 + MINUTE)
    assert await leases.tick() == []
    assert actions.done == []
    assert _events(daemon, "warm", "lease-warning") == []
