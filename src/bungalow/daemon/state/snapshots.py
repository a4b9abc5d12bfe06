"""The ``snapshots`` table: saved machine states and what stands on them.

Like the VM table, every write names what it changes; the usage ledger is told
of each one (with the VM the snapshot is charged to), in the same transaction.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from dataclasses import asdict
from typing import Protocol

from bungalow.daemon.state.db import Database
from bungalow.daemon.state.records import Purpose, SnapshotRecord, VmRecord
from bungalow.daemon.state.vms import VmTable
from bungalow.errors import ConflictError


class SnapshotObserver(Protocol):
    """Told of every snapshot row written or deleted (the usage ledger).

    ``vm`` is the VM it is charged to: the one of its name, if that is still the
    VM it was taken of (a detached snapshot keeps only the name).
    """

    def snapshot_written(self, snapshot: SnapshotRecord, vm: VmRecord | None) -> None: ...
    def snapshot_deleted(self, snapshot_id: str) -> None: ...


def _record(row: sqlite3.Row) -> SnapshotRecord:
    data = dict(row)
    data["digests"] = json.loads(data["digests"])
    data["networks"] = json.loads(data["networks"])
    data["purpose"] = Purpose(data["purpose"])
    data["tpm"] = bool(data["tpm"])
    return SnapshotRecord(**data)


class SnapshotTable:
    def __init__(
        self, db: Database, vms: VmTable, observer: SnapshotObserver | None = None
    ) -> None:
        self._db = db
        self._vms = vms
        self._observer = observer

    # -- reads ---------------------------------------------------------------------------------

    def by_id(self, snapshot_id: str) -> SnapshotRecord | None:
        row = self._db.one("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,))
        return _record(row) if row else None

    def find(self, vm_id: str, name: str) -> SnapshotRecord | None:
        row = self._db.one("SELECT * FROM snapshots WHERE vm_id = ? AND name = ?", (vm_id, name))
        return _record(row) if row else None

    def list(
        self, vm_id: str | None = None, *, purpose: Purpose | None = None
    ) -> builtins.list[SnapshotRecord]:
        """Snapshots oldest first: of one VM (``""``: detached ones), of one purpose."""
        query, args = "SELECT * FROM snapshots WHERE 1", []
        if vm_id is not None:
            query, args = query + " AND vm_id = ?", [vm_id]
        if purpose is not None:
            query, args = query + " AND purpose = ?", [*args, str(purpose)]
        return [_record(row) for row in self._db.all(query + " ORDER BY created", args)]

    def dependents(self, snapshot_id: str) -> builtins.list[str]:
        """Names of the VMs and snapshots whose disks are layered on this snapshot's disk."""
        snaps = self._db.all(
            "SELECT vm_name, name FROM snapshots WHERE base_snapshot = ? ORDER BY name",
            (snapshot_id,),
        )
        return self._vms.layered_on(snapshot_id) + [
            f"snapshot {row['name']} of {row['vm_name']}" for row in snaps
        ]

    # -- writes --------------------------------------------------------------------------------

    def insert(self, snapshot: SnapshotRecord) -> None:
        """Add a finished snapshot; ConflictError when its VM has one of that name."""
        data = asdict(snapshot)
        data["digests"] = json.dumps(snapshot.digests)
        data["networks"] = json.dumps(snapshot.networks)
        data["purpose"] = str(snapshot.purpose)
        columns = ", ".join(data)
        marks = ", ".join(f":{key}" for key in data)
        with self._db.transaction():
            try:
                self._db.execute(f"INSERT INTO snapshots ({columns}) VALUES ({marks})", data)
            except sqlite3.IntegrityError:
                raise ConflictError(
                    f"The VM {snapshot.vm_name} already has a snapshot named {snapshot.name}; "
                    "choose another name or remove that one first."
                ) from None
            self._written(snapshot.id)

    def detach(self, snapshot_id: str, purpose: Purpose | None = None) -> None:
        """The snapshot no longer belongs to its VM (gone, or deleted with a way back);
        ``purpose`` changes it too."""
        with self._db.transaction():
            self._db.execute("UPDATE snapshots SET vm_id = '' WHERE id = ?", (snapshot_id,))
            if purpose is not None:
                self._set_purpose(snapshot_id, purpose)
            self._written(snapshot_id)

    def set_purpose(self, snapshot_id: str, purpose: Purpose) -> None:
        with self._db.transaction():
            self._set_purpose(snapshot_id, purpose)
            self._written(snapshot_id)

    def retire_template(self, snapshot_id: str) -> None:
        """No new sandbox starts from this template; it stays while sandboxes stand on it."""
        self._db.execute("UPDATE snapshots SET template_key = NULL WHERE id = ?", (snapshot_id,))

    def delete(self, snapshot_id: str) -> None:
        with self._db.transaction():
            self._db.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))
            if self._observer is not None:
                self._observer.snapshot_deleted(snapshot_id)

    def _set_purpose(self, snapshot_id: str, purpose: Purpose) -> None:
        self._db.execute(
            "UPDATE snapshots SET purpose = ? WHERE id = ?", (str(purpose), snapshot_id)
        )

    def charged_to(self, snapshot: SnapshotRecord) -> VmRecord | None:
        """The VM a snapshot's bytes are charged to: the one of its name, if that is still
        the VM it was taken of (a fork's or a detached snapshot keeps only the name)."""
        vm = self._vms.find(snapshot.vm_name)
        if vm is not None and snapshot.vm_id and vm.id != snapshot.vm_id:
            return None
        return vm

    def _written(self, snapshot_id: str) -> None:
        snapshot = self.by_id(snapshot_id)
        if snapshot is not None and self._observer is not None:
            self._observer.snapshot_written(snapshot, self.charged_to(snapshot))
