"""Snapshot-and-delete with a way back: ``bungalow restore-deleted NAME`` within the retention.

The VM is saved (whole if it runs, its disk if not; a suspended VM's saved
state is reused) into a detached snapshot of purpose ``deleted``, which the
snapshot keeper leaves alone, and then removed. The ``deleted_vms`` table
keeps what the VM was (owner, labels, project, limits, idle policy, creation
record, port forwards) and until when it can come back. Restoring clones the
snapshot into a VM of the same name (running, whatever its state was, with its
host port forwards unless another VM took a port meanwhile), and the snapshot
then lives as long as that VM stands on it. The reaper deletes the saves whose
retention ended.
"""

from __future__ import annotations

import builtins
import secrets
import time

from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.snapshots.suspend import Suspender
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import DeletedVm, Operation, Purpose, VmRecord
from bungalow.daemon.vms.plan import check_ports_free
from bungalow.daemon.vms.requests import CloneRequest, Ownership
from bungalow.errors import ConflictError, InvalidStateError, NotFoundError

#: What of the VM's record comes back with it.
_KEPT = (
    "owner", "labels", "project", "limits", "idle", "created_by", "origin", "sandbox", "state",
    "ports", "user_data", "ssh_keys",
)  # fmt: skip


class Restorable:
    def __init__(self, snapshots: Snapshots, suspender: Suspender, clock: Clock) -> None:
        self.snapshots = snapshots
        self.suspender = suspender
        self.vms = snapshots.vms
        self.store = snapshots.store
        self.clock = clock

    def list(self, project: str | None = None) -> builtins.list[DeletedVm]:
        return self.store.deleted.list(project)

    def find(self, name: str, project: str | None = None) -> DeletedVm:
        for deleted in reversed(self.list(project)):
            if deleted.name == name:
                return deleted
        raise NotFoundError(
            f"There is no deleted VM named {name} to restore; `bungalow restore-deleted --list` "
            "lists those still kept."
        )

    async def snapshot_and_delete(self, name: str, retention: float) -> DeletedVm:
        """Keep a way back for ``retention`` seconds, then remove the VM."""
        async with self.vms.locked(name):
            vm = self.vms.get(name)
            if vm.state in (VmState.STARTING, VmState.STOPPING):
                raise InvalidStateError(
                    f"Cannot snapshot and delete {name} while it is {vm.state}; try again soon."
                )
            saved = self.suspender.saved_state(vm) if vm.state is VmState.SUSPENDED else None
            if saved is not None:
                self.store.snapshots.detach(saved.id, Purpose.DELETED)
                snapshot = saved
            else:
                snapshot = await self.snapshots.capture(
                    vm, name=f"deleted-{secrets.token_hex(4)}", purpose=Purpose.DELETED,
                    detached=True,
                )  # fmt: skip
            now = self.clock.now()
            record = {key: getattr(vm, key) for key in _KEPT}
            deleted = DeletedVm(name, snapshot.id, vm.project, now, now + retention, record)
            with self.store.transaction():  # from here on a restart finishes the removal
                self.store.deleted.insert(deleted)
                vm = self.store.vms.begin(vm.id, Operation.REMOVE)
            until = time.strftime("%Y-%m-%d %H:%M", time.localtime(now + retention))
            self.store.events.add(
                name, "snapshot-and-delete",
                f"saved ({snapshot.kind}) and removed; `bungalow restore-deleted {name}` brings "
                f"it back until {until}",
            )  # fmt: skip
            await self.vms.discard(vm)
            self.store.events.add(name, "removed", "removed")
        return deleted

    async def restore(self, name: str, project: str | None = None) -> VmRecord:
        """Bring the deleted VM ``name`` back, running; ConflictError if the name or one of
        its host ports is taken now."""
        deleted = self.find(name, project)
        if self.store.vms.find(name) is not None:
            raise ConflictError(
                f"A VM named {name} exists again; rename or remove it before restoring the "
                "deleted one."
            )
        snapshot = self.store.snapshots.by_id(deleted.snapshot)
        if snapshot is None:
            raise NotFoundError(f"The saved state of the deleted VM {name} is gone.")
        kept = deleted.record
        # An orphan (its project removed meanwhile) comes back as the admin's.
        owner_project = kept["project"] if kept["project"] in self.store.projects.names() else None
        ports = tuple(kept.get("ports", ()))
        try:
            check_ports_free(ports, self.vms.ports_claimed())
        except ConflictError as exc:
            raise ConflictError(
                f"The deleted VM {name} forwarded host ports that are taken now "
                f"({exc.message.split(';')[0]}); free the port and restore it again."
            ) from None
        request = CloneRequest(
            name=name, parent="", sandbox=bool(kept["sandbox"]),
            ownership=Ownership(owner_project, kept["owner"], kept["labels"], kept["created_by"]),
            limits=kept["limits"], idle=kept["idle"], origin=kept["origin"], ports=ports,
            user_data=kept.get("user_data"), ssh_keys=tuple(kept.get("ssh_keys", ())),
        )  # fmt: skip
        vm = await self.snapshots.clone_from(snapshot, request)
        with self.store.transaction():
            # From now on the snapshot is an ordinary base, collected with the last VM on it.
            self.store.snapshots.set_purpose(snapshot.id, Purpose.RESTORED)
            self.store.deleted.delete(deleted.snapshot)
        self.store.events.add(name, "restored-deleted", f"restored from its {snapshot.kind} save")
        return vm

    async def expire(self) -> builtins.list[str]:
        """Delete the saves whose retention ended; the names of the VMs now gone for good."""
        gone = []
        now = self.clock.now()
        for deleted in self.list():
            if deleted.keep_until > now:
                continue
            snapshot = self.store.snapshots.by_id(deleted.snapshot)
            if snapshot is not None and self.store.snapshots.dependents(snapshot.id):
                # Clones stand on it: an ordinary base now, collected with the last of them.
                self.store.snapshots.set_purpose(snapshot.id, Purpose.RESTORED)
            elif snapshot is not None:
                await self.snapshots.keeper.discard(snapshot)
            self.store.deleted.delete(deleted.snapshot)
            self.store.events.add(
                deleted.name, "retention-ended", "its save was deleted; it cannot be restored now"
            )
            gone.append(deleted.name)
        await self.snapshots.keeper.collect()
        return gone
