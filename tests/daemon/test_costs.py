"""The cost model: interval arithmetic by hand, and the usage ledger on a real SQLite store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bungalow.daemon.accounting.costs import (
    RUNNING,
    SNAPSHOT,
    STOPPED,
    Interval,
    Rates,
    charge,
    hourly,
    parse_grouping,
    parse_moment,
    totals,
)
from bungalow.daemon.accounting.ledger import UsageLedger
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.store import SnapshotRecord, Store, VmRecord
from bungalow.errors import UserError

GIB = 1 << 30
H = 3600.0
RATES = Rates(vcpu_hour=0.04, memory_gib_hour=0.005, disk_gib_month=0.073)
T0 = 1_700_000_000.0


def _interval(kind: str, began: float, ended: float | None, **terms: Any) -> Interval:
    base = Interval(vm_id="v1", vm_name="web", kind=kind, cpus=2, memory=4 * GIB,
                    disk=10 * GIB, began=began, ended=ended, rates=RATES)  # fmt: skip
    return replace(base, **terms)


def test_a_running_hour_charges_cpu_memory_and_disk() -> None:
    part = charge(_interval(RUNNING, T0, T0 + 3 * H), 0, T0 + 10 * H)
    # 3 h x 2 vCPU x 0.04, 3 h x 4 GiB x 0.005, 3 h x 10 GiB x 0.073 / 730
    assert part.cpu == pytest.approx(0.24)
    assert part.memory == pytest.approx(0.06)
    assert part.disk == pytest.approx(0.003)
    assert part.total == pytest.approx(0.303)
    assert (part.running_seconds, part.stopped_seconds, part.intervals) == (3 * H, 0, 1)


def test_a_stopped_vm_pays_only_for_its_disk() -> None:
    part = charge(_interval(STOPPED, T0, T0 + 5 * H), 0, T0 + 10 * H)
    assert (part.cpu, part.memory) == (0, 0)
    assert part.disk == pytest.approx(5 * 10 * 0.073 / 730)
    assert (part.running_seconds, part.stopped_seconds) == (0, 5 * H)


def test_intervals_are_clipped_to_the_window_and_open_ones_end_at_until() -> None:
    closed = _interval(RUNNING, T0, T0 + 4 * H)
    assert charge(closed, T0 + 1 * H, T0 + 2.5 * H).running_seconds == 1.5 * H
    assert charge(closed, T0 + 4 * H, T0 + 9 * H).intervals == 0  # [since, until): none
    assert charge(closed, T0 - 9 * H, T0).intervals == 0
    still_open = _interval(RUNNING, T0, None)
    assert charge(still_open, T0 + H, T0 + 3 * H).cpu == pytest.approx(2 * 2 * 0.04)
    assert hourly(still_open) == pytest.approx(2 * 0.04 + 4 * 0.005 + 10 * 0.073 / 730)


def test_run_stop_run_sums_match_the_hand_computed_values() -> None:
    history = [
        _interval(RUNNING, T0, T0 + 2 * H),
        _interval(STOPPED, T0 + 2 * H, T0 + 7 * H),
        _interval(RUNNING, T0 + 7 * H, None),
    ]
    (whole,) = totals(history, "vm", 0, T0 + 8 * H).values()
    assert (whole.running_seconds, whole.stopped_seconds, whole.intervals) == (3 * H, 5 * H, 3)
    assert whole.cpu == pytest.approx(3 * 2 * 0.04)
    assert whole.memory == pytest.approx(3 * 4 * 0.005)
    assert whole.disk == pytest.approx(8 * 10 * 0.073 / 730)
    # A window that cuts the first run and the stop in half.
    (part,) = totals(history, "vm", T0 + 1 * H, T0 + 4.5 * H).values()
    assert (part.running_seconds, part.stopped_seconds) == (1 * H, 2.5 * H)


def test_grouping_by_owner_project_and_label() -> None:
    intervals = [
        _interval(RUNNING, T0, T0 + H, owner="alice", project="ci", labels={"team": "a"}),
        _interval(RUNNING, T0, T0 + 2 * H, vm_id="v2", owner="bob", labels={"team": "a"}),
        _interval(SNAPSHOT, T0, T0 + H, vm_id="v3", owner="alice", cpus=0, memory=0),
    ]
    by_owner = totals(intervals, "owner", 0, T0 + 9 * H)
    assert by_owner["alice"].running_seconds == H and by_owner["alice"].intervals == 2
    assert by_owner["bob"].cpu == pytest.approx(2 * 2 * 0.04)
    assert by_owner["alice"].disk == pytest.approx(2 * 10 * 0.073 / 730)
    by_project = totals(intervals, "project", 0, T0 + 9 * H)
    assert set(by_project) == {"ci", "-"}
    by_team = totals(intervals, "label:team", 0, T0 + 9 * H)
    assert by_team["a"].running_seconds == 3 * H and by_team["-"].intervals == 1


@pytest.mark.parametrize(
    ("text", "words"),
    [("cpu", "Cannot group costs by 'cpu'"), ("label:", "label key ''"), ("label:A", "'A'")],
)
def test_a_bad_grouping_is_one_sentence(text: str, words: str) -> None:
    with pytest.raises(UserError, match=words):
        parse_grouping(text)


def test_moments_are_dates_or_durations_ago() -> None:
    assert parse_moment("2h", T0) == T0 - 2 * H
    assert parse_moment("7d", T0) == T0 - 7 * 24 * H
    assert parse_moment("now", T0) == T0
    assert parse_moment("2026-11-01T00:00:00+00:00", T0) == 1793491200.0
    with pytest.raises(UserError, match="neither a date nor a duration"):
        parse_moment("last tuesday", T0)
    with pytest.raises(UserError, match="--until"):
        parse_moment("12", T0, what="--until")  # a bare number: seconds? a year? refused


# -- the ledger, on a real store --------------------------------------------------------------


class SetClock(Clock):
    """A clock a test sets by hand (the daemon's reads the BUNGALOW_TEST_CLOCK file)."""

    def __init__(self, now: float) -> None:
        super().__init__()
        self.at = now

    def now(self) -> float:
        return self.at


def _vm(name: str = "web", vm_id: str = "v1", **changes: Any) -> VmRecord:
    vm = VmRecord(id=vm_id, name=name, state=VmState.CREATED, image_id="f" * 64,
                  image_name="debian-12", profile="micro", cpus=2, memory=4 * GIB,
                  disk_size=10 * GIB, owner="alice")  # fmt: skip
    return vm.with_changes(**changes)


def _ledger(path: Path, clock: Clock, rates: Rates = RATES) -> tuple[Store, UsageLedger]:
    store = Store(path)
    ledger = UsageLedger(store, clock, rates)
    store.observer = ledger
    return store, ledger


def _set(store: Store, name: str, state: VmState) -> None:
    store.update(store.get(name).with_changes(state=state))


def test_the_ledger_follows_run_stop_run_and_keeps_a_removed_vm(tmp_path: Path) -> None:
    clock = SetClock(T0)
    store, ledger = _ledger(tmp_path / "db", clock)
    store.insert(_vm())
    for state in (VmState.STARTING, VmState.RUNNING):
        _set(store, "web", state)
    store.update(store.get("web").with_changes(pid=42))  # no change of terms: no new interval
    clock.at += 2 * H
    for state in (VmState.STOPPING, VmState.STOPPED):
        _set(store, "web", state)
    clock.at += 5 * H
    _set(store, "web", VmState.STARTING)
    _set(store, "web", VmState.PAUSED)  # paused is billed as running
    clock.at += 1 * H
    cost = ledger.cost_of("v1")
    expected = 3 * 2 * 0.04 + 3 * 4 * 0.005 + 8 * 10 * 0.073 / 730
    assert cost.so_far == pytest.approx(expected)
    assert cost.per_hour == pytest.approx(2 * 0.04 + 4 * 0.005 + 10 * 0.073 / 730)
    assert [i.kind for i in ledger.of_vm("v1")] == [STOPPED, RUNNING, STOPPED, RUNNING]

    store.delete("v1")
    clock.at += 10 * H
    assert ledger.cost_of("v1").so_far == pytest.approx(expected)  # the cost stays, no more
    assert ledger.cost_of("v1").per_hour == 0
    store.close()
    _, again = _ledger(tmp_path / "db", clock)
    assert again.cost_of("v1").so_far == pytest.approx(expected)


def test_snapshots_are_charged_to_their_vm_even_when_detached(tmp_path: Path) -> None:
    clock = SetClock(T0)
    store, ledger = _ledger(tmp_path / "db", clock)
    store.insert(_vm(state=VmState.STOPPED))
    snapshot = SnapshotRecord(id="s1", name="s1", vm_id="v1", vm_name="web", kind="disk",
                              purpose="user", image_id="f" * 64, profile="micro", cpus=2,
                              memory=4 * GIB, disk_size=10 * GIB, accel="tcg", qemu="7.2",
                              digests={}, size=3 * GIB)  # fmt: skip
    store.insert_snapshot(snapshot)
    template = snapshot.with_changes(id="t1", vm_id="", purpose="template", name="t")
    store.insert_snapshot(template)  # the daemon's own: charged to nobody
    clock.at += 2 * H
    store.delete("v1")
    store.update_snapshot(snapshot.with_changes(vm_id=""))  # detached: clones stand on it
    clock.at += 2 * H
    store.delete_snapshot("s1")
    clock.at += 2 * H
    disk = (2 * 10 + 4 * 3) * 0.073 / 730
    assert ledger.cost_of("v1").so_far == pytest.approx(disk)
    assert len(ledger.intervals()) == 2


def test_a_restart_dates_what_changed_unseen_at_the_last_heartbeat(tmp_path: Path) -> None:
    clock = SetClock(T0)
    store, ledger = _ledger(tmp_path / "db", clock)
    store.insert(_vm(state=VmState.RUNNING))
    store.insert(_vm("kept", "v2", state=VmState.RUNNING))
    clock.at += H
    ledger.beat()
    store.close()  # the daemon dies; two hours later a new one finds v1's QEMU gone
    clock.at += 2 * H
    store, ledger = _ledger(tmp_path / "db", clock)
    with ledger.backdated():
        ledger.reconcile()
        _set(store, "web", VmState.FAILED)
    assert [(i.kind, i.began, i.ended) for i in ledger.of_vm("v1")] == [
        (RUNNING, T0, T0 + H),
        (STOPPED, T0 + H, None),
    ]
    # v2's QEMU outlived the daemon: one interval, still open, no double count.
    assert [(i.kind, i.began, i.ended) for i in ledger.of_vm("v2")] == [(RUNNING, T0, None)]


def test_new_prices_apply_from_the_restart_on(tmp_path: Path) -> None:
    clock = SetClock(T0)
    store, ledger = _ledger(tmp_path / "db", clock)
    store.insert(_vm(state=VmState.RUNNING, cpus=1, memory=0, disk_size=0))
    clock.at += H
    ledger.beat()
    store.close()
    dearer = Rates(vcpu_hour=1.0, memory_gib_hour=0, disk_gib_month=0)
    store, ledger = _ledger(tmp_path / "db", clock, dearer)
    with ledger.backdated():
        ledger.reconcile()
    clock.at += H
    assert ledger.cost_of("v1").so_far == pytest.approx(0.04 + 1.0)
