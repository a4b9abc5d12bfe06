"""The cost report of GET /v1/costs on the daemon's own ledger, over histories a test writes.

Prices are one unit per vCPU-hour and nothing else, so every expected number
is a count of vCPU-hours read off the history.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bungalow.daemon.accounting.report import CostReport, cost_report
from bungalow.daemon.server.config import Config
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import Rates, VmRecord
from bungalow.errors import UserError
from tests.daemon.conftest import build_daemon
from tests.daemon.records import T0, SetClock, put, vm

H = 3600.0
CPU_ONLY = Config(rates=Rates(vcpu_hour=1.0, memory_gib_hour=0.0, disk_gib_month=0.0),
                  currency="EUR")  # fmt: skip


@pytest.fixture
def priced(tmp_path: Path, clock: SetClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    monkeypatch.delenv("BUNGALOW_IMAGES", raising=False)
    daemon = build_daemon(tmp_path / "home", clock, CPU_ONLY)
    yield daemon
    daemon.store.close()


def _history(daemon: Daemon, clock: SetClock) -> dict[str, VmRecord]:
    """T0: ci (2 vCPUs) starts; T0+1h: web (1 vCPU, project p1) starts; T0+2h: web is
    removed; T0+3h: ci stops; now is T0+5h."""
    store = daemon.store
    labels = {"team": "a"}
    ci = put(store, vm("ci", vm_id="v-ci", cpus=2, owner="alice", labels=labels), VmState.RUNNING)
    clock.at = T0 + H
    web = put(store, vm("web", vm_id="v-web", cpus=1, owner="bob", project="p1"), VmState.RUNNING)
    clock.at = T0 + 2 * H
    store.vms.delete(web.id)
    clock.at = T0 + 3 * H
    store.vms.set_state(ci.id, VmState.STOPPING)
    store.vms.set_state(ci.id, VmState.STOPPED)
    clock.at = T0 + 5 * H
    return {"ci": ci, "web": web}


def _report(daemon: Daemon, **options: Any) -> CostReport:
    existing = {record.id for record in daemon.store.vms.list()}
    return cost_report(daemon.ledger, existing, **options)


def _totals(report: CostReport) -> list[tuple[str, float]]:
    return [(line.group, round(line.charge.total, 9)) for line in report.lines]


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(moment))


def test_by_vm_the_dearest_first_and_a_removed_vm_kept(priced: Daemon, clock: SetClock) -> None:
    _history(priced, clock)
    report = _report(priced)
    assert _totals(report) == [("ci", 6.0), ("web", 1.0)]
    ci, web = report.lines
    assert (ci.vm_id, ci.removed, web.vm_id, web.removed) == ("v-ci", False, "v-web", True)
    assert (ci.charge.running_seconds, ci.charge.stopped_seconds) == (3 * H, 2 * H)
    assert report.total.total == pytest.approx(7.0)
    assert (report.by, report.since, report.until) == ("vm", T0, T0 + 5 * H)
    assert (report.currency, report.rates["vcpu_hour"]) == ("EUR", 1.0)


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("owner", [("alice", 6.0), ("bob", 1.0)]),
        ("project", [("-", 6.0), ("p1", 1.0)]),
        ("label:team", [("a", 6.0), ("-", 1.0)]),
    ],
)
def test_grouped_by_owner_project_or_label(
    priced: Daemon, clock: SetClock, by: str, expected: list[tuple[str, float]]
) -> None:
    _history(priced, clock)
    report = _report(priced, by=by)
    assert _totals(report) == expected
    assert all(line.vm_id is None and not line.removed for line in report.lines)


def test_a_range_cuts_the_history(priced: Daemon, clock: SetClock) -> None:
    _history(priced, clock)
    # From 1.5 h to 2.5 h in: half an hour of web, an hour of ci's two vCPUs.
    window = _report(priced, since=_iso(T0 + 1.5 * H), until=_iso(T0 + 2.5 * H))
    assert _totals(window) == [("ci", 2.0), ("web", 0.5)]
    assert (window.since, window.until) == (T0 + 1.5 * H, T0 + 2.5 * H)
    # "3h" is three hours before the daemon's now (2 h in), when web was removed: ci's
    # last running hour is in the window, and nothing of web.
    recent = _report(priced, since="3h")
    assert _totals(recent) == [("ci", 2.0)]
    assert recent.since == T0 + 2 * H
    assert _report(priced, until=_iso(T0 + 99 * H)).until == T0 + 5 * H  # never past now


def test_a_project_sees_only_its_own_usage(priced: Daemon, clock: SetClock) -> None:
    _history(priced, clock)
    assert _totals(_report(priced, project="p1")) == [("web", 1.0)]
    assert _report(priced, project="p2").lines == []


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"by": "cpu"}, "Cannot group costs by 'cpu'"),
        ({"since": "1h", "until": "2h"}, "is empty; since must come before until"),
        ({"since": "yesterday"}, "--since value 'yesterday' is neither a date nor a duration"),
        ({"until": "12"}, "--until"),
    ],
)
def test_a_bad_grouping_or_range_is_one_sentence(
    priced: Daemon, options: dict[str, str], says: str
) -> None:
    with pytest.raises(UserError, match=says) as refused:
        _report(priced, **options)
    assert refused.value.message.endswith(".")
