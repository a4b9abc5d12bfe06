"""Snapshot-and-delete with a way back: ``bungalow restore-deleted NAME`` within the retention.

The VM is saved (whole if it runs, its disk if not; a suspended VM's saved
state is reused) into a detached snapshot of purpose ``deleted``, which
``Snapshots.collect`` leaves alone, and then removed. The ``deleted_vms``
table keeps what the VM was (owner, labels, project, limits, idle policy,
creation record) and until when it can come back. Restoring clones the
snapshot into a VM of the same name (running, whatever its state was, with its
host port forwards unless another VM took a port meanwhile), and the snapshot
then lives as long as that VM stands on it. The reaper deletes the snapshots whose retention ended.
"""

from __future__ import annotations

import builtins
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from bungalow.daemon.snapshots.operations import CloneRequest, Snapshots
from bungalow.daemon.snapshots.suspend import Suspender
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.store import VmRecord
from bungalow.daemon.vms import boot
from bungalow.daemon.vms.limits import Limits
from bungalow.errors import ConflictError, InvalidStateError, NotFoundError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deleted_vms (
    snapshot TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    project TEXT,
    deleted REAL NOT NULL,
    keep_until REAL NOT NULL,
    record TEXT NOT NULL
);
"""
#: What of the VM's record comes back with it.
_KEPT = (
    "owner", "labels", "project", "limits", "idle", "created_by", "origin", "sandbox", "state",
    "ports",
)  # fmt: skip


@dataclass(frozen=True)
class DeletedVm:
    name: str
    snapshot: str
    project: str | None
    deleted: float
    keep_until: float
    record: dict[str, Any]


class Restorable:
    def __init__(self, snapshots: Snapshots, suspender: Suspender, clock: Clock) -> None:
        self.snapshots = snapshots
        self.suspender = suspender
        self.m = snapshots.m
        self.store = snapshots.store
        self.clock = clock
        self._db = self.store.connection
        self._db.executescript(_SCHEMA)

    def list(self, project: str | None = None) -> list[DeletedVm]:
        rows = self._db.execute("SELECT * FROM deleted_vms ORDER BY deleted").fetchall()
        found = [DeletedVm(**{**dict(row), "record": json.loads(row["record"])}) for row in rows]
        return [d for d in found if project is None or d.project == project]

    def find(self, name: str, project: str | None = None) -> DeletedVm:
        for deleted in reversed(self.list(project)):
            if deleted.name == name:
                return deleted
        raise NotFoundError(
            f"There is no deleted VM named {name} to restore; `bungalow restore-deleted --list` "
            "lists those still kept."
        )

    async def snapshot_and_delete(self, name: str, retention: float) -> DeletedVm:
        """Keep a way back, then remove the VM."""
        async with self.m.lock(name):
            vm = self.store.get(name)
            if vm.state in (VmState.STARTING, VmState.STOPPING):
                raise InvalidStateError(
                    f"Cannot snapshot and delete {name} while it is {vm.state}; try again soon."
                )
            saved = self.suspender.saved_state(vm) if vm.state is VmState.SUSPENDED else None
            if saved is not None:
                snapshot = saved.with_changes(vm_id="", purpose="deleted")
                self.store.update_snapshot(snapshot)
            else:
                snapshot = await self.snapshots.capture(
                    vm, name=f"deleted-{secrets.token_hex(4)}", purpose="deleted", detached=True
                )
            now = self.clock.now()
            record = {key: getattr(vm, key) for key in _KEPT}
            deleted = DeletedVm(name, snapshot.id, vm.project, now, now + retention, record)
            self._db.execute(
                "INSERT INTO deleted_vms (snapshot, name, project, deleted, keep_until, record) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (snapshot.id, name, vm.project, now, now + retention, json.dumps(record)),
            )
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(now + retention))
        self.store.add_event(
            name, "snapshot-and-delete",
            f"saved ({snapshot.kind}) and removed; `bungalow restore-deleted {name}` brings it "
            f"back until {until}",
        )  # fmt: skip
        await self.m.remove(name)
        return deleted

    async def restore(self, name: str, project: str | None = None) -> VmRecord:
        deleted = self.find(name, project)
        if self.store.find(name) is not None:
            raise ConflictError(
                f"A VM named {name} exists again; rename or remove it before restoring the "
                "deleted one."
            )
        snapshot = self.store.snapshot_by_id(deleted.snapshot)
        if snapshot is None:
            raise NotFoundError(f"The saved state of the deleted VM {name} is gone.")
        kept = deleted.record
        exists = self._db.execute("SELECT 1 FROM projects WHERE name = ?", (kept["project"],))
        project = kept["project"] if exists.fetchone() else None  # an orphan comes back as admin's
        ports = tuple(kept.get("ports", ()))
        try:
            boot.check_ports_free(ports, boot.claimed_ports(self.store.list()))
        except ConflictError as exc:
            raise ConflictError(
                f"The deleted VM {name} forwarded host ports that are taken now "
                f"({exc.message.split(';')[0]}); free the port and restore it again."
            ) from None
        request = CloneRequest(
            name=name, parent="", sandbox=bool(kept["sandbox"]), project=project,
            owner=kept["owner"], labels=kept["labels"], created_by=kept["created_by"],
            ports=ports,
        )  # fmt: skip
        vm = await self.snapshots.clone_from(snapshot, request)
        async with self.m.lock(name):
            vm = self.store.get(name).with_changes(
                limits=kept["limits"], idle=kept["idle"], origin=kept["origin"]
            )
            self.store.update(vm)
            runtime = self.m.runtimes.get(name)
            if runtime is not None and Limits.from_json(vm.limits) != Limits():
                await self.m.apply_limits(vm, runtime)
        # From now on the snapshot is an ordinary base, collected with the last VM on it.
        self.store.update_snapshot(snapshot.with_changes(purpose="restored"))
        self._db.execute("DELETE FROM deleted_vms WHERE snapshot = ?", (deleted.snapshot,))
        self.store.add_event(name, "restored-deleted", f"restored from its {snapshot.kind} save")
        return vm

    async def expire(self) -> builtins.list[str]:
        """Delete the saves whose retention ended; the names of the VMs now gone for good."""
        gone = []
        now = self.clock.now()
        for deleted in self.list():
            if deleted.keep_until > now:
                continue
            snapshot = self.store.snapshot_by_id(deleted.snapshot)
            if snapshot is not None and not self.store.snapshot_dependents(snapshot.id):
                await self.snapshots.discard(snapshot)
            self._db.execute("DELETE FROM deleted_vms WHERE snapshot = ?", (deleted.snapshot,))
            self.store.add_event(
                deleted.name, "retention-ended", "its save was deleted; it cannot be restored now"
            )
            gone.append(deleted.name)
        await self.snapshots.collect()
        return gone
