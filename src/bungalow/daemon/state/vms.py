"""The ``vms`` table: VM rows read as :class:`VmRecord` and changed by intent-named writes.

Every write touches only the columns it names and returns the row as it now
is, so a write made after an ``await`` never rolls back a column another task
changed meanwhile. A VM's ``state`` changes only through :meth:`VmTable.set_state`,
which checks the move against the transition table (lifecycle.py) inside the
same transaction as the write: a move the table forbids raises
InvalidStateError and writes nothing, wherever in the daemon it comes from.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from dataclasses import asdict
from enum import StrEnum
from typing import Any, Protocol

from bungalow.daemon.state.db import Database
from bungalow.daemon.state.lifecycle import VmState, transition
from bungalow.daemon.state.records import Operation, VmRecord
from bungalow.errors import ConflictError, InvalidStateError, VmNotFoundError

_JSON_COLUMNS = ("ports", "limits", "labels", "idle", "ssh_keys")
_LIST_COLUMNS = ("ports", "ssh_keys")
#: What may change together with the state (what a start, stop or failure records).
_STATE_FIELDS = frozenset({"pid", "started", "error", "cmdline", "base_snapshot", "operation"})


class VmObserver(Protocol):
    """Told of every VM row written or deleted, in the write's transaction (the ledger)."""

    def vm_written(self, vm: VmRecord) -> None: ...
    def vm_deleted(self, vm_id: str) -> None: ...


def _record(row: sqlite3.Row) -> VmRecord:
    data = dict(row)
    data["state"] = VmState(data["state"])
    for column in _JSON_COLUMNS:
        data[column] = json.loads(data[column] or ("[]" if column in _LIST_COLUMNS else "{}"))
    data["sandbox"] = bool(data["sandbox"])
    data["tpm"] = bool(data["tpm"])
    data["operation"] = None if data["operation"] is None else Operation(data["operation"])
    return VmRecord(**data)


def _not_found(name: str) -> VmNotFoundError:
    return VmNotFoundError(f"There is no VM named {name}; `bungalow ls` lists the VMs that exist.")


class VmTable:
    def __init__(self, db: Database, observer: VmObserver | None = None) -> None:
        self._db = db
        self._observer = observer

    # -- reads ---------------------------------------------------------------------------------

    def find(self, name: str) -> VmRecord | None:
        row = self._db.one("SELECT * FROM vms WHERE name = ?", (name,))
        return _record(row) if row else None

    def get(self, name: str) -> VmRecord:
        """The VM called ``name``; VmNotFoundError with a sentence when there is none."""
        vm = self.find(name)
        if vm is None:
            raise _not_found(name)
        return vm

    def by_id(self, vm_id: str) -> VmRecord | None:
        row = self._db.one("SELECT * FROM vms WHERE id = ?", (vm_id,))
        return _record(row) if row else None

    def list(self) -> builtins.list[VmRecord]:
        return [_record(row) for row in self._db.all("SELECT * FROM vms ORDER BY created")]

    def pooled(self, template_id: str) -> builtins.list[VmRecord]:
        rows = self._db.all("SELECT * FROM vms WHERE pool = ? ORDER BY created", (template_id,))
        return [_record(row) for row in rows]

    def expiring(self) -> builtins.list[VmRecord]:
        """VMs with a deadline, soonest first."""
        rows = self._db.all("SELECT * FROM vms WHERE expires_at IS NOT NULL ORDER BY expires_at")
        return [_record(row) for row in rows]

    def layered_on(self, snapshot_id: str) -> builtins.list[str]:
        """Names of the VMs whose disks are layered on the snapshot ``snapshot_id``."""
        rows = self._db.all(
            "SELECT name FROM vms WHERE base_snapshot = ? ORDER BY name", (snapshot_id,)
        )
        return [row["name"] for row in rows]

    # -- writes --------------------------------------------------------------------------------

    def insert(self, vm: VmRecord) -> VmRecord:
        """Add a new VM; it must be ``created``. ConflictError when the name is taken."""
        if vm.state is not VmState.CREATED:
            raise InvalidStateError(f"A new VM starts as created, not {vm.state}.")
        data = asdict(vm)
        data["state"] = str(vm.state)
        data["sandbox"] = int(vm.sandbox)
        data["operation"] = None if vm.operation is None else str(vm.operation)
        for column in _JSON_COLUMNS:
            data[column] = json.dumps(data[column])
        columns = ", ".join(data)
        marks = ", ".join(f":{key}" for key in data)
        with self._db.transaction():
            try:
                self._db.execute(f"INSERT INTO vms ({columns}) VALUES ({marks})", data)
            except sqlite3.IntegrityError:
                raise ConflictError(
                    f"A VM named {vm.name} already exists; choose another name or remove it "
                    f"with `bungalow rm {vm.name}`."
                ) from None
            return self._written(vm.id)

    def set_state(self, vm_id: str, target: VmState, **fields: Any) -> VmRecord:
        """Move the VM to ``target`` (InvalidStateError if the table forbids it from its
        current state), writing ``fields`` (pid, started, error, cmdline, base_snapshot,
        operation) with it."""
        unknown = set(fields) - _STATE_FIELDS
        if unknown:
            raise ValueError(f"set_state cannot write {', '.join(sorted(unknown))}")
        with self._db.transaction():
            current = self._current(vm_id)
            transition(current.name, current.state, target)
            self._set(vm_id, state=target, **fields)
            return self._written(vm_id)

    def begin(self, vm_id: str, operation: Operation) -> VmRecord:
        """Record that ``operation`` is under way (cleared by :meth:`end`)."""
        return self._update(vm_id, operation=str(operation))

    def end(self, vm_id: str) -> VmRecord | None:
        """The operation is over; None when the VM is gone by then."""
        with self._db.transaction():
            if self.by_id(vm_id) is None:
                return None
            return self._update(vm_id, operation=None)

    def set_disk_origin(
        self, vm_id: str, base_snapshot: str | None, cmdline: str | None
    ) -> VmRecord:
        """The VM's disk now comes from a snapshot (restore): its base, and the kernel
        command line its guest booted with (None: it boots afresh)."""
        return self._update(vm_id, base_snapshot=base_snapshot, cmdline=cmdline)

    def set_limits(self, vm_id: str, limits: dict[str, Any]) -> VmRecord:
        return self._update(vm_id, limits=json.dumps(limits))

    def set_memory_min(self, vm_id: str, floor: int | None) -> VmRecord:
        return self._update(vm_id, memory_min=floor)

    def set_ssh_keys(self, vm_id: str, keys: builtins.list[str]) -> VmRecord:
        return self._update(vm_id, ssh_keys=json.dumps(keys))

    def set_media(self, vm_id: str, media: str | None) -> VmRecord:
        """The ``iso`` image now in the VM's CD-ROM drive (None: the tray is empty)."""
        return self._update(vm_id, media=media)

    def set_idle(self, vm_id: str, idle: dict[str, Any]) -> VmRecord:
        return self._update(vm_id, idle=json.dumps(idle))

    def set_lease(self, vm_id: str, expires_at: float | None, on_expiry: str) -> VmRecord:
        """A new deadline (None: none) and action; the earlier warning no longer counts."""
        return self._update(vm_id, expires_at=expires_at, on_expiry=on_expiry, lease_warned=None)

    def set_deadline(self, vm_id: str, expires_at: float | None) -> VmRecord:
        """Move a sandbox's deadline (its timeout counts from when it was ready)."""
        return self._update(vm_id, expires_at=expires_at)

    def mark_lease_warned(self, vm_id: str, when: float, deadline: float) -> bool:
        """Record the lease warning for ``deadline``; False if the lease changed meanwhile."""
        cursor = self._db.execute(
            "UPDATE vms SET lease_warned = ? WHERE id = ? AND expires_at = ?",
            (when, vm_id, deadline),
        )
        return cursor.rowcount == 1

    def touch_active(self, name: str, when: float) -> None:
        """Someone used the VM, or its guest did something: it is not idle."""
        self._db.execute("UPDATE vms SET last_active = ? WHERE name = ?", (when, name))

    def claim_pooled(
        self,
        template_id: str,
        *,
        expires_at: float | None,
        owner: str | None,
        labels: dict[str, str],
        created_by: str,
    ) -> VmRecord | None:
        """Take the oldest running VM out of a pool for a new owner, atomically; None if the
        pool is empty."""
        with self._db.transaction():
            row = self._db.one(
                "UPDATE vms SET pool = NULL, expires_at = ?, owner = ?, labels = ?, "
                "created_by = ? WHERE id = (SELECT id FROM vms WHERE pool = ? AND "
                "state = 'running' AND operation IS NULL ORDER BY created LIMIT 1) RETURNING id",
                (expires_at, owner, json.dumps(labels), created_by, template_id),
            )
            return None if row is None else self._written(row["id"])

    def delete(self, vm_id: str) -> None:
        with self._db.transaction():
            self._db.execute("DELETE FROM vms WHERE id = ?", (vm_id,))
            if self._observer is not None:
                self._observer.vm_deleted(vm_id)

    # -- helpers -------------------------------------------------------------------------------

    def _current(self, vm_id: str) -> VmRecord:
        vm = self.by_id(vm_id)
        if vm is None:
            raise VmNotFoundError(f"The VM {vm_id} is gone; `bungalow ls` lists those that exist.")
        return vm

    def _update(self, vm_id: str, **columns: Any) -> VmRecord:
        with self._db.transaction():
            self._current(vm_id)
            self._set(vm_id, **columns)
            return self._written(vm_id)

    def _set(self, vm_id: str, **columns: Any) -> None:
        columns = {k: str(v) if isinstance(v, StrEnum) else v for k, v in columns.items()}
        sets = ", ".join(f"{column} = :{column}" for column in columns)
        self._db.execute(f"UPDATE vms SET {sets} WHERE id = :vm_id", {**columns, "vm_id": vm_id})

    def _written(self, vm_id: str) -> VmRecord:
        vm = self._current(vm_id)
        if self._observer is not None:
            self._observer.vm_written(vm)
        return vm
