"""The daemon's state in SQLite (WAL): one row per VM and a log of events.

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
from typing import Any

from bungalow.daemon.lifecycle import VmState
from bungalow.errors import ConflictError, NotFoundError

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
    error TEXT
);
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

    def with_changes(self, **changes: Any) -> VmRecord:
        return replace(self, **changes)


def _row_to_record(row: sqlite3.Row) -> VmRecord:
    data = dict(row)
    data["state"] = VmState(data["state"])
    data["ports"] = json.loads(data["ports"])
    return VmRecord(**data)


class Store:
    """A thin, typed face on the SQLite file; every write commits at once."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def insert(self, vm: VmRecord) -> None:
        data = asdict(vm)
        data["state"] = str(vm.state)
        data["ports"] = json.dumps(vm.ports)
        columns = ", ".join(data)
        marks = ", ".join(f":{key}" for key in data)
        try:
            self._db.execute(f"INSERT INTO vms ({columns}) VALUES ({marks})", data)
        except sqlite3.IntegrityError:
            raise ConflictError(
                f"A VM named {vm.name} already exists; choose another name or remove it "
                f"with `bungalow rm {vm.name}`."
            ) from None

    def update(self, vm: VmRecord) -> None:
        data = asdict(vm)
        data["state"] = str(vm.state)
        data["ports"] = json.dumps(vm.ports)
        sets = ", ".join(f"{key} = :{key}" for key in data if key != "id")
        self._db.execute(f"UPDATE vms SET {sets} WHERE id = :id", data)

    def delete(self, vm_id: str) -> None:
        self._db.execute("DELETE FROM vms WHERE id = ?", (vm_id,))

    def find(self, name: str) -> VmRecord | None:
        row = self._db.execute("SELECT * FROM vms WHERE name = ?", (name,)).fetchone()
        return _row_to_record(row) if row else None

    def get(self, name: str) -> VmRecord:
        vm = self.find(name)
        if vm is None:
            raise NotFoundError(
                f"There is no VM named {name}; `bungalow ls` lists the VMs that exist."
            )
        return vm

    def list(self) -> builtins.list[VmRecord]:
        rows = self._db.execute("SELECT * FROM vms ORDER BY created").fetchall()
        return [_row_to_record(row) for row in rows]

    def add_event(self, vm: str | None, kind: str, message: str) -> None:
        self._db.execute(
            "INSERT INTO events (time, vm, kind, message) VALUES (?, ?, ?, ?)",
            (time.time(), vm, kind, message),
        )

    def events(self, vm: str | None = None, limit: int = 100) -> builtins.list[dict[str, Any]]:
        if vm is None:
            rows = self._db.execute(
                "SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM events WHERE vm = ? ORDER BY id DESC LIMIT ?", (vm, limit)
            ).fetchall()
        return [dict(row) for row in reversed(rows)]
