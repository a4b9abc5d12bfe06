"""The state layer on a real SQLite file: records, guarded state changes, column writes,
migrations."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from bungalow.daemon.state.db import Database
from bungalow.daemon.state.lifecycle import VmState, can_transition
from bungalow.daemon.state.migrations import MIGRATIONS
from bungalow.daemon.state.records import Operation, Purpose, SnapshotRecord
from bungalow.errors import BungalowError, ConflictError, InvalidStateError, NotFoundError
from tests.daemon.records import GIB, SetClock, open_store, put, vm


def test_records_survive_reopening_the_database(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    made = put(store, vm(ports=["127.0.0.1:8080:80/tcp"]), VmState.STARTING)
    store.vms.set_state(made.id, VmState.RUNNING, pid=42)
    store.events.add("web", "started", "started")
    store.close()
    again = open_store(tmp_path / "db")
    record = again.vms.get("web")
    assert record.state is VmState.RUNNING
    assert record.pid == 42
    assert record.ports == ["127.0.0.1:8080:80/tcp"]
    assert again.events.query(vm="web")[0]["kind"] == "started"


def test_duplicate_names_conflict(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    store.vms.insert(vm())
    with pytest.raises(ConflictError, match="already exists"):
        store.vms.insert(vm(vm_id="other"))


def test_missing_vm_is_not_found(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    with pytest.raises(NotFoundError, match="bungalow ls"):
        store.vms.get("ghost")
    made = store.vms.insert(vm())
    store.vms.delete(made.id)
    assert store.vms.find("web") is None


def test_database_uses_wal(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    store.close()
    with sqlite3.connect(tmp_path / "db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_vm_must_start_as_created(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    with pytest.raises(InvalidStateError, match="created"):
        store.vms.insert(vm(state=VmState.RUNNING))
    assert store.vms.list() == []


@pytest.mark.parametrize(("current", "target"), list(itertools.product(VmState, VmState)))
def test_every_state_write_goes_through_the_transition_table(
    tmp_path: Path, current: VmState, target: VmState
) -> None:
    store = open_store(tmp_path / "db")
    made = put(store, vm(), current)
    if can_transition(current, target):
        assert store.vms.set_state(made.id, target).state is target
    else:
        with pytest.raises(InvalidStateError):
            store.vms.set_state(made.id, target, pid=7)
        after = store.vms.get("web")
        assert (after.state, after.pid) == (current, None)  # nothing written


def test_writes_touch_only_their_columns(tmp_path: Path) -> None:
    """A write made from a record read before an await cannot roll another one back."""
    store = open_store(tmp_path / "db")
    made = put(store, vm(), VmState.RUNNING)
    stale = store.vms.get("web")
    store.vms.touch_active("web", 123.0)
    assert store.vms.mark_lease_warned(made.id, 5.0, deadline=9.0) is False  # no such lease
    store.vms.set_lease(made.id, 9.0, "stop")
    assert store.vms.mark_lease_warned(made.id, 5.0, deadline=9.0) is True
    store.vms.set_limits(stale.id, {"cpu_weight": 200})
    now = store.vms.get("web")
    assert (now.last_active, now.lease_warned, now.expires_at) == (123.0, 5.0, 9.0)
    assert now.limits == {"cpu_weight": 200}


def test_a_lease_change_clears_its_warning(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    made = put(store, vm(expires_at=9.0))
    store.vms.mark_lease_warned(made.id, 5.0, deadline=9.0)
    assert store.vms.set_lease(made.id, 99.0, "delete").lease_warned is None


def test_operations_are_recorded_and_cleared(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    made = put(store, vm(), VmState.RUNNING)
    assert store.vms.begin(made.id, Operation.SNAPSHOT).operation is Operation.SNAPSHOT
    assert open_store(tmp_path / "db").vms.get("web").operation is Operation.SNAPSHOT
    assert store.vms.end(made.id) is not None
    assert store.vms.get("web").operation is None
    store.vms.delete(made.id)
    assert store.vms.end(made.id) is None


def test_a_transaction_commits_all_or_nothing(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    made = put(store, vm(), VmState.RUNNING)
    with pytest.raises(InvalidStateError), store.transaction():
        store.vms.begin(made.id, Operation.STOP)
        store.vms.set_state(made.id, VmState.CREATED)  # refused: the begin is undone too
    assert store.vms.get("web").operation is None


def test_the_pool_is_claimed_once(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    put(store, vm("p1", pool="t1"), VmState.RUNNING)
    claimed = store.vms.claim_pooled(
        "t1", expires_at=50.0, owner="bob", labels={"a": "b"}, created_by="admin"
    )
    assert claimed is not None
    assert (claimed.pool, claimed.owner, claimed.labels, claimed.expires_at) == (
        None, "bob", {"a": "b"}, 50.0,
    )  # fmt: skip
    assert (
        store.vms.claim_pooled("t1", expires_at=None, owner=None, labels={}, created_by="") is None
    )


def _snapshot(snapshot_id: str, vm_id: str, **changes: object) -> SnapshotRecord:
    record = SnapshotRecord(
        id=snapshot_id, name=snapshot_id, vm_id=vm_id, vm_name="web", kind="disk",
        purpose=Purpose.USER, image_id="f" * 64, profile="micro", cpus=2, memory=4 * GIB,
        disk_size=10 * GIB, accel="tcg", qemu="7.2", digests={"disk.qcow2": "x"}, size=GIB,
    )  # fmt: skip
    return record.with_changes(**changes)


def test_snapshots_know_what_stands_on_them(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    web = put(store, vm())
    store.snapshots.insert(_snapshot("s1", web.id))
    store.snapshots.insert(_snapshot("s2", web.id, base_snapshot="s1"))
    put(store, vm("clone", base_snapshot="s1"))
    assert store.snapshots.dependents("s1") == ["clone", "snapshot s2 of web"]
    with pytest.raises(ConflictError, match="already has a snapshot named s1"):
        store.snapshots.insert(_snapshot("s3", web.id, name="s1"))
    store.snapshots.detach("s1", Purpose.DELETED)
    detached = store.snapshots.by_id("s1")
    assert detached is not None and (detached.vm_id, detached.purpose) == ("", Purpose.DELETED)
    assert [s.id for s in store.snapshots.list("")] == ["s1"]


def test_events_are_found_by_kind_and_subject(tmp_path: Path) -> None:
    clock = SetClock(100.0)
    store = open_store(tmp_path / "db", clock)
    store.events.add(None, "project-removed", "project a removed", subject="a")
    clock.at = 200.0
    store.events.add("web", "stopped", "stopped")
    assert store.events.last(("project-removed",), subject="a") == 100.0
    assert store.events.last(("project-removed",), subject="b") is None
    assert store.events.last(("stopped", "failed"), vm="web") == 200.0
    assert [e["kind"] for e in store.events.query(since=150.0)] == ["stopped"]


def test_a_database_from_before_versioning_is_migrated(tmp_path: Path) -> None:
    """A file an older bungalowd made: tables without the later columns, user_version 0."""
    path = tmp_path / "db"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE vms (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, state TEXT NOT "
            "NULL, image_id TEXT NOT NULL, image_name TEXT NOT NULL, profile TEXT NOT NULL, "
            "cpus INTEGER NOT NULL, memory INTEGER NOT NULL, disk_size INTEGER NOT NULL, "
            "ports TEXT NOT NULL, accel TEXT NOT NULL, mac TEXT NOT NULL, pid INTEGER, "
            "created REAL NOT NULL, started REAL, error TEXT);"
            "INSERT INTO vms VALUES ('v1', 'old', 'stopped', 'f', 'debian-12', 'micro', 1, "
            "536870912, 4294967296, '[]', 'auto', '0e:00:00:00:00:01', NULL, 1.0, NULL, NULL);"
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, "
            "vm TEXT, kind TEXT NOT NULL, message TEXT NOT NULL);"
            "INSERT INTO events (time, vm, kind, message) VALUES (5, NULL, 'project', "
            "'project team-a removed');"
        )
    store = open_store(path)
    old_vm = store.vms.get("old")
    assert (old_vm.state, old_vm.labels, old_vm.operation) == (VmState.STOPPED, {}, None)
    assert store.events.last(("project-removed",), subject="team-a") == 5.0
    store.close()
    assert Database(path).version == len(MIGRATIONS)


def test_a_database_from_a_newer_daemon_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with sqlite3.connect(path) as newer:
        newer.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(BungalowError, match="newer bungalowd"):
        Database(path)


def test_firmware_and_tpm_are_kept_for_vms_and_their_snapshots(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    made = put(store, vm(firmware="uefi-secure", tpm=True))
    store.snapshots.insert(_snapshot("s1", made.id, firmware="uefi-secure", tpm=True))
    plain = put(store, vm("plain"))
    store.close()
    again = open_store(tmp_path / "db")
    record = again.vms.get("web")
    assert (record.firmware, record.tpm) == ("uefi-secure", True)
    assert (again.vms.get("plain").firmware, again.vms.get("plain").tpm) == ("bios", False)
    snapshot = again.snapshots.by_id("s1")
    assert snapshot is not None and (snapshot.firmware, snapshot.tpm) == ("uefi-secure", True)
    assert plain.tpm is False


def test_a_snapshot_keeps_the_medium_in_its_vms_drive(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    made = put(store, vm(media="e" * 64))
    store.snapshots.insert(_snapshot("s1", made.id, media="e" * 64))
    store.snapshots.insert(_snapshot("s2", made.id, name="s2"))
    store.close()
    again = open_store(tmp_path / "db")
    kept, empty = again.snapshots.by_id("s1"), again.snapshots.by_id("s2")
    assert kept is not None and kept.media == "e" * 64
    assert empty is not None and empty.media is None
