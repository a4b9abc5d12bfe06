"""The daemon's state in SQLite (WAL): VMs, their snapshots, and a log of events.

Only the daemon opens this database. Rows are plain dataclasses so the layers
below (qemu, images, guest) never see SQL.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from bungalow.daemon.state import audit
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import VmState
from bungalow.errors import ConflictError, VmNotFoundError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    image_id TEXT NOT NULL,
    image_name TEXT NOT NULL,
    profile TEXT NOT NULL,
    cpus INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    disk_size INTEGER NOT NULL,
    ports TEXT NOT NULL,
    accel TEXT NOT NULL,
    mac TEXT NOT NULL,
    pid INTEGER,
    created REAL NOT NULL,
    started REAL,
    error TEXT,
    machine_id TEXT NOT NULL DEFAULT '',
    cmdline TEXT,
    base_snapshot TEXT,
    parent TEXT,
    sandbox INTEGER NOT NULL DEFAULT 0,
    expires_at REAL,
    on_expiry TEXT NOT NULL DEFAULT 'delete',
    pool TEXT,
    limits TEXT NOT NULL DEFAULT '{}',
    project TEXT,
    owner TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    created_by TEXT NOT NULL DEFAULT '',
    origin TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    max_vcpus INTEGER,
    max_memory INTEGER,
    max_disk INTEGER,
    max_vms INTEGER,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    vm_id TEXT,
    vm_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    purpose TEXT NOT NULL,
    created REAL NOT NULL,
    image_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    cpus INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    disk_size INTEGER NOT NULL,
    accel TEXT NOT NULL,
    qemu TEXT NOT NULL,
    cmdline TEXT,
    base_snapshot TEXT,
    digests TEXT NOT NULL,
    size INTEGER NOT NULL,
    template_key TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS snapshot_names ON snapshots (vm_id, name);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    vm TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class VmRecord:
    """What the daemon remembers about a VM between restarts."""

    id: str
    name: str
    state: VmState
    image_id: str
    image_name: str
    profile: str
    cpus: int
    memory: int
    disk_size: int
    ports: list[str] = field(default_factory=list)
    accel: str = "auto"
    mac: str = ""
    pid: int | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    error: str | None = None
    #: Written to /etc/machine-id in the guest; unique per VM, clones included.
    machine_id: str = ""
    #: The kernel command line the running guest booted with (kept by its snapshots).
    cmdline: str | None = None
    #: The snapshot whose disk this VM's disk is layered on (a clone's origin).
    base_snapshot: str | None = None
    #: The VM this one was cloned or forked from, by name.
    parent: str | None = None
    sandbox: bool = False
    #: When the daemon removes (or stops) the VM on its own; a sandbox's timeout.
    expires_at: float | None = None
    on_expiry: str = "delete"
    #: Set while the VM waits, started, in the warm pool of this template snapshot.
    pool: str | None = None
    #: CPU weight and cap, memory limit, disk IOPS and bandwidth (daemon/limits.py).
    limits: dict[str, Any] = field(default_factory=dict)
    #: The project the VM belongs to; None for the host admin's own VMs.
    project: str | None = None
    #: The person or team the VM is for (``--owner``; by default the user who made it).
    owner: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: Who asked for the VM: ``admin`` or ``project NAME`` (the token that made it).
    created_by: str = ""
    #: What it was made from: ``image debian-12``, ``snapshot s1 of web``, ...
    origin: str = ""
    #: This VM's own idle policy (``after``, ``action``, thresholds); see daemon/idle.py.
    idle: dict[str, Any] = field(default_factory=dict)
    #: When a guest signal or a use of exec, files or console last showed activity.
    last_active: float | None = None
    #: The deadline a ``lease-warning`` event was recorded for (a renewal warns anew).
    lease_warned: float | None = None

    def with_changes(self, **changes: Any) -> VmRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class SnapshotRecord:
    """A saved state: ``full`` (memory, devices, disk) or ``disk`` (a stopped VM's disk).

    ``purpose`` is ``user`` (made by ``snapshot create``), ``template`` (the
    pre-booted machine sandboxes start from) or ``fork`` (made for ``fork``).
    ``vm_id`` is empty for a snapshot of no VM: a template, a fork's, or one
    whose VM is gone while clones still stand on it.
    """

    id: str
    name: str
    vm_id: str
    vm_name: str
    kind: str
    purpose: str
    image_id: str
    profile: str
    cpus: int
    memory: int
    disk_size: int
    accel: str
    qemu: str
    digests: dict[str, str]
    size: int
    cmdline: str | None = None
    base_snapshot: str | None = None
    template_key: str | None = None
    created: float = field(default_factory=time.time)

    def with_changes(self, **changes: Any) -> SnapshotRecord:
        return replace(self, **changes)


def _row_to_record(row: sqlite3.Row) -> VmRecord:
    data = dict(row)
    data["state"] = VmState(data["state"])
    data["ports"] = json.loads(data["ports"])
    data["sandbox"] = bool(data["sandbox"])
    data["limits"] = json.loads(data["limits"] or "{}")
    data["labels"] = json.loads(data["labels"] or "{}")
    data["idle"] = json.loads(data["idle"] or "{}")
    return VmRecord(**data)


def _vm_row(vm: VmRecord) -> dict[str, Any]:
    data = asdict(vm)
    data["state"] = str(vm.state)
    data["ports"] = json.dumps(vm.ports)
    data["sandbox"] = int(vm.sandbox)
    data["limits"] = json.dumps(vm.limits)
    data["labels"] = json.dumps(vm.labels)
    data["idle"] = json.dumps(vm.idle)
    return data


def _snapshot_row(snapshot: SnapshotRecord) -> dict[str, Any]:
    data = asdict(snapshot)
    data["digests"] = json.dumps(snapshot.digests)
    return data


def _row_to_snapshot(row: sqlite3.Row) -> SnapshotRecord:
    data = dict(row)
    data["digests"] = json.loads(data["digests"])
    return SnapshotRecord(**data)


#: Columns added since the first release, with their definitions, for older databases.
_ADDED_COLUMNS = {
    "vms": {
        "machine_id": "TEXT NOT NULL DEFAULT ''",
        "cmdline": "TEXT",
        "base_snapshot": "TEXT",
        "parent": "TEXT",
        "sandbox": "INTEGER NOT NULL DEFAULT 0",
        "expires_at": "REAL",
        "on_expiry": "TEXT NOT NULL DEFAULT 'delete'",
        "pool": "TEXT",
        "limits": "TEXT NOT NULL DEFAULT '{}'",
        "project": "TEXT",
        "owner": "TEXT",
        "labels": "TEXT NOT NULL DEFAULT '{}'",
        "created_by": "TEXT NOT NULL DEFAULT ''",
        "origin": "TEXT NOT NULL DEFAULT ''",
        "idle": "TEXT NOT NULL DEFAULT '{}'",
        "last_active": "REAL",
        "lease_warned": "REAL",
    },
    "events": {
        "actor": "TEXT NOT NULL DEFAULT ''",
        "reason": "TEXT NOT NULL DEFAULT ''",
        "project": "TEXT",
    },
    "projects": {"idle": "TEXT NOT NULL DEFAULT '{}'"},
}


class StoreObserver(Protocol):
    """Told of every VM and snapshot row written or deleted (the usage ledger, usage.py)."""

    def vm_written(self, vm: VmRecord) -> None: ...
    def vm_deleted(self, vm_id: str) -> None: ...
    def snapshot_written(self, snapshot: SnapshotRecord) -> None: ...
    def snapshot_deleted(self, snapshot_id: str) -> None: ...


class Store:
    """A thin, typed face on the SQLite file; every write commits at once."""

    observer: StoreObserver | None = None

    def __init__(self, path: Path, clock: Clock | None = None) -> None:
        #: Event times are read through the daemon's clock, like every policy date.
        self.clock = clock or Clock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._upgrade()

    def _upgrade(self) -> None:
        """Add the columns a database made by an older bungalowd lacks."""
        for table, columns in _ADDED_COLUMNS.items():
            have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column, definition in columns.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """For the daemon's other tables (projects.py); the VM rows go through the methods."""
        return self._db

    def insert(self, vm: VmRecord) -> None:
        data = _vm_row(vm)
        columns = ", ".join(data)
        marks = ", ".join(f":{key}" for key in data)
        try:
            self._db.execute(f"INSERT INTO vms ({columns}) VALUES ({marks})", data)
        except sqlite3.IntegrityError:
            raise ConflictError(
                f"A VM named {vm.name} already exists; choose another name or remove it "
                f"with `bungalow rm {vm.name}`."
            ) from None
        if self.observer is not None:
            self.observer.vm_written(vm)

    def update(self, vm: VmRecord) -> None:
        data = _vm_row(vm)
        sets = ", ".join(f"{key} = :{key}" for key in data if key != "id")
        self._db.execute(f"UPDATE vms SET {sets} WHERE id = :id", data)
        if self.observer is not None:
            self.observer.vm_written(vm)

    def delete(self, vm_id: str) -> None:
        self._db.execute("DELETE FROM vms WHERE id = ?", (vm_id,))
        if self.observer is not None:
            self.observer.vm_deleted(vm_id)

    def find(self, name: str) -> VmRecord | None:
        row = self._db.execute("SELECT * FROM vms WHERE name = ?", (name,)).fetchone()
        return _row_to_record(row) if row else None

    def get(self, name: str) -> VmRecord:
        vm = self.find(name)
        if vm is None:
            raise VmNotFoundError(
                f"There is no VM named {name}; `bungalow ls` lists the VMs that exist."
            )
        return vm

    def list(self) -> builtins.list[VmRecord]:
        rows = self._db.execute("SELECT * FROM vms ORDER BY created").fetchall()
        return [_row_to_record(row) for row in rows]

    def pooled(self, template_id: str) -> builtins.list[VmRecord]:
        rows = self._db.execute(
            "SELECT * FROM vms WHERE pool = ? ORDER BY created", (template_id,)
        ).fetchall()
        return [_row_to_record(row) for row in rows]

    def claim_pooled(self, template_id: str, expires_at: float | None) -> VmRecord | None:
        """Take the oldest running VM out of a pool, atomically; None if the pool is empty."""
        row = self._db.execute(
            "UPDATE vms SET pool = NULL, expires_at = ? WHERE id = (SELECT id FROM vms "
            "WHERE pool = ? AND state = 'running' ORDER BY created LIMIT 1) RETURNING *",
            (expires_at, template_id),
        ).fetchone()
        return _row_to_record(row) if row else None

    def expiring(self) -> builtins.list[VmRecord]:
        """VMs with a deadline, soonest first."""
        rows = self._db.execute(
            "SELECT * FROM vms WHERE expires_at IS NOT NULL ORDER BY expires_at"
        ).fetchall()
        return [_row_to_record(row) for row in rows]

    # -- snapshots -----------------------------------------------------------------------------

    def insert_snapshot(self, snapshot: SnapshotRecord) -> None:
        data = _snapshot_row(snapshot)
        columns = ", ".join(data)
        marks = ", ".join(f":{key}" for key in data)
        try:
            self._db.execute(f"INSERT INTO snapshots ({columns}) VALUES ({marks})", data)
        except sqlite3.IntegrityError:
            raise ConflictError(
                f"The VM {snapshot.vm_name} already has a snapshot named {snapshot.name}; "
                "choose another name or remove that one first."
            ) from None
        if self.observer is not None:
            self.observer.snapshot_written(snapshot)

    def update_snapshot(self, snapshot: SnapshotRecord) -> None:
        data = _snapshot_row(snapshot)
        sets = ", ".join(f"{key} = :{key}" for key in data if key != "id")
        self._db.execute(f"UPDATE snapshots SET {sets} WHERE id = :id", data)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._db.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))
        if self.observer is not None:
            self.observer.snapshot_deleted(snapshot_id)

    def snapshot_by_id(self, snapshot_id: str) -> SnapshotRecord | None:
        row = self._db.execute("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        return _row_to_snapshot(row) if row else None

    def find_snapshot(self, vm_id: str, name: str) -> SnapshotRecord | None:
        row = self._db.execute(
            "SELECT * FROM snapshots WHERE vm_id = ? AND name = ?", (vm_id, name)
        ).fetchone()
        return _row_to_snapshot(row) if row else None

    def snapshots(
        self, vm_id: str | None = None, *, purpose: str | None = None
    ) -> builtins.list[SnapshotRecord]:
        query, args = "SELECT * FROM snapshots WHERE 1", []
        if vm_id is not None:
            query, args = query + " AND vm_id = ?", [vm_id]
        if purpose is not None:
            query, args = query + " AND purpose = ?", [*args, purpose]
        rows = self._db.execute(query + " ORDER BY created", args).fetchall()
        return [_row_to_snapshot(row) for row in rows]

    def snapshot_dependents(self, snapshot_id: str) -> builtins.list[str]:
        """Names of the VMs and snapshots whose disks are layered on this snapshot's disk."""
        vms = self._db.execute(
            "SELECT name FROM vms WHERE base_snapshot = ? ORDER BY name", (snapshot_id,)
        ).fetchall()
        snaps = self._db.execute(
            "SELECT vm_name, name FROM snapshots WHERE base_snapshot = ? ORDER BY name",
            (snapshot_id,),
        ).fetchall()
        return [row["name"] for row in vms] + [
            f"snapshot {row['name']} of {row['vm_name']}" for row in snaps
        ]

    def add_event(self, vm: str | None, kind: str, message: str, reason: str = "") -> None:
        """Append to the audit log (daemon/audit.py); the actor comes from the context."""
        audit.record(self._db, self.clock.now(), vm, kind, message, reason)

    def events(self, vm: str | None = None, limit: int = 100) -> builtins.list[dict[str, Any]]:
        return audit.query(self._db, vm=vm, limit=limit)
