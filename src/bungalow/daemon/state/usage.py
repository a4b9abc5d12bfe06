"""The ``usage`` table of intervals and the daemon's heartbeat (accounting/ledger.py's rows).

Times are seconds since the epoch; an open interval has ``ended`` NULL.
"""

from __future__ import annotations

import builtins
import json
import sqlite3

from bungalow.daemon.state.db import Database
from bungalow.daemon.state.records import Interval, Rates


def _interval(row: sqlite3.Row) -> Interval:
    return Interval(
        vm_id=row["vm_id"],
        vm_name=row["vm_name"],
        kind=row["kind"],
        cpus=row["cpus"],
        memory=row["memory"],
        disk=row["disk"],
        began=row["began"],
        ended=row["ended"],
        rates=Rates(row["vcpu_hour"], row["memory_gib_hour"], row["disk_gib_month"]),
        owner=row["owner"],
        project=row["project"],
        labels=json.loads(row["labels"] or "{}"),
        snapshot_id=row["snapshot_id"],
    )


class UsageTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    def open_interval(self, vm_id: str, snapshot_id: str | None) -> Interval | None:
        row = self._db.one(
            "SELECT * FROM usage WHERE vm_id = ? AND ended IS NULL AND snapshot_id IS ?",
            (vm_id, snapshot_id),
        )
        return _interval(row) if row else None

    def open(self, interval: Interval) -> None:
        """Insert ``interval`` as open (its ``ended`` is ignored)."""
        rates = interval.rates
        self._db.execute(
            "INSERT INTO usage (vm_id, vm_name, snapshot_id, kind, cpus, memory, disk, owner, "
            "project, labels, vcpu_hour, memory_gib_hour, disk_gib_month, began, ended) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (interval.vm_id, interval.vm_name, interval.snapshot_id, interval.kind,
             interval.cpus, interval.memory, interval.disk, interval.owner, interval.project,
             json.dumps(interval.labels), rates.vcpu_hour, rates.memory_gib_hour,
             rates.disk_gib_month, interval.began),
        )  # fmt: skip

    def close(self, vm_id: str, snapshot_id: str | None, when: float) -> None:
        """Close the VM's (or its snapshot's) open interval at ``when`` (never before it began)."""
        self._db.execute(
            "UPDATE usage SET ended = MAX(began, ?) "
            "WHERE vm_id = ? AND snapshot_id IS ? AND ended IS NULL",
            (when, vm_id, snapshot_id),
        )

    def drop_open(self, vm_id: str, snapshot_id: str | None) -> None:
        """Delete the open interval: one that would last no time at all."""
        self._db.execute(
            "DELETE FROM usage WHERE vm_id = ? AND snapshot_id IS ? AND ended IS NULL",
            (vm_id, snapshot_id),
        )

    def close_snapshot(self, snapshot_id: str, when: float) -> None:
        self._db.execute(
            "UPDATE usage SET ended = MAX(began, ?) WHERE snapshot_id = ? AND ended IS NULL",
            (when, snapshot_id),
        )

    def intervals(
        self,
        since: float | None = None,
        until: float | None = None,
        project: str | None = None,
        *,
        open_only: bool = False,
    ) -> builtins.list[Interval]:
        """Intervals overlapping ``[since, until)``, of one project if ``project`` is given."""
        query = "SELECT * FROM usage WHERE " + ("ended IS NULL" if open_only else "1")
        args: builtins.list[object] = []
        if since is not None:
            query, args = query + " AND (ended IS NULL OR ended > ?)", [since]
        if until is not None:
            query, args = query + " AND began < ?", [*args, until]
        if project is not None:
            query, args = query + " AND project = ?", [*args, project]
        return [_interval(row) for row in self._db.all(query + " ORDER BY id", args)]

    def of_vm(self, vm_id: str) -> builtins.list[Interval]:
        rows = self._db.all("SELECT * FROM usage WHERE vm_id = ? ORDER BY id", (vm_id,))
        return [_interval(row) for row in rows]

    def last_beat(self) -> float | None:
        row = self._db.one("SELECT time FROM usage_heartbeat WHERE id = 1")
        return None if row is None else float(row["time"])

    def beat(self, when: float) -> None:
        self._db.execute(
            "INSERT INTO usage_heartbeat (id, time) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET time = excluded.time",
            (when,),
        )
