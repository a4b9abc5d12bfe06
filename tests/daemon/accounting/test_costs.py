"""The cost model: interval arithmetic, checked by hand."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bungalow.daemon.accounting.costs import charge, hourly, parse_grouping, totals
from bungalow.daemon.state.records import RUNNING, SNAPSHOT, STOPPED, Interval, Rates
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
