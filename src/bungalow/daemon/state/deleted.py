"""The ``deleted_vms`` table: VMs snapshot-and-delete'd that can still come back."""

from __future__ import annotations

import builtins
import json

from bungalow.daemon.state.db import Database
from bungalow.daemon.state.records import DeletedVm


class DeletedTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    def insert(self, deleted: DeletedVm) -> None:
        self._db.execute(
            "INSERT INTO deleted_vms (snapshot, name, project, deleted, keep_until, record) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (deleted.snapshot, deleted.name, deleted.project, deleted.deleted,
             deleted.keep_until, json.dumps(deleted.record)),
        )  # fmt: skip

    def list(self, project: str | None = None) -> builtins.list[DeletedVm]:
        """Oldest first; only ``project``'s when it is given."""
        rows = self._db.all("SELECT * FROM deleted_vms ORDER BY deleted")
        found = [DeletedVm(**{**dict(row), "record": json.loads(row["record"])}) for row in rows]
        return [d for d in found if project is None or d.project == project]

    def delete(self, snapshot_id: str) -> None:
        self._db.execute("DELETE FROM deleted_vms WHERE snapshot = ?", (snapshot_id,))
