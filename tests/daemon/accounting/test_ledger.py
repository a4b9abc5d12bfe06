"""The usage ledger on a real SQLite store: it follows every VM and snapshot row written."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.daemon.accounting.ledger import UsageLedger
from bungalow.daemon.state.db import Database
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import RUNNING, STOPPED, Purpose, Rates, SnapshotRecord
from bungalow.daemon.state.store import Store
from bungalow.daemon.state.usage import UsageTable
from tests.daemon.records import GIB, T0, SetClock, put, vm

H = 3600.0
RATES = Rates(vcpu_hour=0.04, memory_gib_hour=0.005, disk_gib_month=0.073)


def _ledger(path: Path, clock: SetClock, rates: Rates = RATES) -> tuple[Store, UsageLedger]:
    db = Database(path)
    ledger = UsageLedger(UsageTable(db), clock, rates)
    return Store(db, clock, observer=ledger), ledger


def _reconcile(store: Store, ledger: UsageLedger) -> None:
    pairs = [(s, store.snapshots.charged_to(s)) for s in store.snapshots.list()]
    ledger.reconcile(store.vms.list(), pairs)


def test_the_ledger_follows_run_stop_run_and_keeps_a_removed_vm(tmp_path: Path) -> None:
    clock = SetClock(T0)
    store, ledger = _ledger(tmp_path / "db", clock)
    web = put(store, vm(vm_id="v1"), VmState.RUNNING)
    store.vms.set_limits(web.id, {"cpu_weight": 50})  # no change of terms: no new interval
    clock.at += 2 * H
    store.vms.set_state(web.id, VmState.STOPPING)
    store.vms.set_state(web.id, VmState.STOPPED)
    clock.at += 5 * H
    store.vms.set_state(web.id, VmState.STARTING)
    store.vms.set_state(web.id, VmState.RUNNING)
    store.vms.set_state(web.id, VmState.PAUSED)  # paused is billed as running
    clock.at += 1 * H
    cost = ledger.cost_of("v1")
    expected = 3 * 2 * 0.04 + 3 * 4 * 0.005 + 8 * 10 * 0.073 / 730
    assert cost.so_far == pytest.approx(expected)
    assert cost.per_hour == pytest.approx(2 * 0.04 + 4 * 0.005 + 10 * 0.073 / 730)
    assert [i.kind for i in ledger.usage.of_vm("v1")] == [RUNNING, STOPPED, RUNNING]

    store.vms.delete("v1")
    clock.at += 10 * H
    assert ledger.cost_of("v1").so_far == pytest.approx(expected)  # the cost stays, no more
    assert ledger.cost_of("v1").per_hour == 0
    store.close()
    _, again = _ledger(tmp_path / "db", clock)
    assert again.cost_of("v1").so_far == pytest.approx(expected)


def test_snapshots_are_charged_to_their_vm_even_when_detached(tmp_path: Path) -> None:
    clock = SetClock(T0)
    store, ledger = _ledger(tmp_path / "db", clock)
    web = put(store, vm(vm_id="v1"), VmState.STOPPED)
    snapshot = SnapshotRecord(
        id="s1", name="s1", vm_id=web.id, vm_name="web", kind="disk", purpose=Purpose.USER,
        image_id="f" * 64, profile="micro", cpus=2, memory=4 * GIB, disk_size=10 * GIB,
        accel="tcg", qemu="7.2", digests={}, size=3 * GIB,
    )  # fmt: skip
    store.snapshots.insert(snapshot)
    template = snapshot.with_changes(id="t1", vm_id="", purpose=Purpose.TEMPLATE, name="t")
    store.snapshots.insert(template)  # the daemon's own: charged to nobody
    clock.at += 2 * H
    store.vms.delete("v1")
    store.snapshots.detach("s1")  # clones stand on it
    clock.at += 2 * H
    store.snapshots.delete("s1")
    clock.at += 2 * H
    disk = (2 * 10 + 4 * 3) * 0.073 / 730
    assert ledger.cost_of("v1").so_far == pytest.approx(disk)
    assert len(ledger.intervals()) == 2


def test_a_restart_dates_what_changed_unseen_at_the_last_heartbeat(tmp_path: Path) -> None:
    clock = SetClock(T0)
    store, ledger = _ledger(tmp_path / "db", clock)
    web = put(store, vm(vm_id="v1"), VmState.RUNNING)
    put(store, vm("kept", "v2"), VmState.RUNNING)
    clock.at += H
    ledger.beat()
    store.close()  # the daemon dies; two hours later a new one finds v1's QEMU gone
    clock.at += 2 * H
    store, ledger = _ledger(tmp_path / "db", clock)
    with ledger.backdated():
        _reconcile(store, ledger)
        store.vms.set_state(web.id, VmState.FAILED)
    assert [(i.kind, i.began, i.ended) for i in ledger.usage.of_vm("v1")] == [
        (RUNNING, T0, T0 + H),
        (STOPPED, T0 + H, None),
    ]
    # v2's QEMU outlived the daemon: one interval, still open, no double count.
    assert [(i.kind, i.began, i.ended) for i in ledger.usage.of_vm("v2")] == [(RUNNING, T0, None)]


def test_new_prices_apply_from_the_restart_on(tmp_path: Path) -> None:
    clock = SetClock(T0)
    store, ledger = _ledger(tmp_path / "db", clock)
    put(store, vm(vm_id="v1", cpus=1, memory=0, disk_size=0), VmState.RUNNING)
    clock.at += H
    ledger.beat()
    store.close()
    dearer = Rates(vcpu_hour=1.0, memory_gib_hour=0, disk_gib_month=0)
    store, ledger = _ledger(tmp_path / "db", clock, dearer)
    with ledger.backdated():
        _reconcile(store, ledger)
    clock.at += H
    assert ledger.cost_of("v1").so_far == pytest.approx(0.04 + 1.0)


def test_a_row_a_crash_left_without_its_interval_is_reconciled(tmp_path: Path) -> None:
    clock = SetClock(T0)
    db = Database(tmp_path / "db")
    unobserved = Store(db, clock)  # the daemon died between the row and its interval
    put(unobserved, vm(vm_id="v1", cpus=1, memory=0, disk_size=0), VmState.RUNNING)
    clock.at += H
    store, ledger = _ledger(tmp_path / "db", clock)
    _reconcile(store, ledger)
    clock.at += H
    assert ledger.cost_of("v1").so_far == pytest.approx(0.04)
