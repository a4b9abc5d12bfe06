"""Snapshots, restores and clones: the daemon's operations on saved machine states.

- ``create``: a running (or paused) VM is saved whole -- memory, devices and
  disk -- with the guest paused for the copy (see capture.py); a stopped VM's
  disk alone is saved.
- ``restore``: the VM goes back to the snapshot; a full one brings the exact
  running machine back (processes, files, memory). Everything the snapshot
  needs is checked before the VM is touched, and if the new QEMU still fails
  the VM's own disk is put back.
- ``clone``: a new VM running from a snapshot (or from the source VM as it is
  now): its disk is a copy-on-write layer on the snapshot's disk and its RAM
  the snapshot's memory file mapped privately, so clones share every page none
  of them has written. It then gets its own identity (see agent_identity.py).

A snapshot is kept while any VM or snapshot disk is layered on it; when its VM
is removed it stays, detached, until the last clone built on it goes (snapshot_keeper.py).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bungalow.daemon.snapshots import files as snapshot_files
from bungalow.daemon.snapshots.capture import DISK_FILES, FULL_FILES, capture_disk, capture_running
from bungalow.daemon.snapshots.keeper import SnapshotKeeper
from bungalow.daemon.state.lifecycle import ACTIVE_STATES, VmState
from bungalow.daemon.state.store import SnapshotRecord, VmRecord
from bungalow.daemon.vms import boot, netshaping
from bungalow.errors import (
    BungalowError,
    ConflictError,
    InvalidStateError,
    SnapshotNotFoundError,
    UserError,
)
from bungalow.host.files import sparse_copy, tree_allocated
from bungalow.images.store import Image
from bungalow.names import validate_name
from bungalow.qemu.argv import random_mac
from bungalow.qemu.monitor import Monitor
from bungalow.qemu.process import qemu_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CloneRequest:
    """A VM to make from a snapshot; ``expires_at`` and ``sandbox`` come from sandboxes."""

    name: str
    parent: str
    sandbox: bool = False
    expires_at: float | None = None
    pool: str | None = None
    project: str | None = None
    owner: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created_by: str = ""
    limits: dict[str, Any] = field(default_factory=dict)
    #: Host port forwards; only a VM that comes back (restore-deleted) has its own again.
    ports: tuple[str, ...] = ()

    @classmethod
    def inheriting(cls, source: VmRecord, name: str, **changes: Any) -> CloneRequest:
        """A copy of ``source`` called ``name``: its project, owner, labels and limits."""
        fields: dict[str, Any] = {
            "name": name, "parent": source.name, "project": source.project,
            "owner": source.owner, "labels": source.labels, "created_by": source.created_by,
            "limits": source.limits,
        }  # fmt: skip
        return cls(**{**fields, **changes})


class Snapshots(SnapshotKeeper):
    """The snapshot operations, on top of the VM manager's locks, store and runtimes."""

    # -- queries -------------------------------------------------------------------------------

    def get(self, vm_name: str, name: str) -> SnapshotRecord:
        vm = self.store.get(vm_name)
        snapshot = self.store.find_snapshot(vm.id, name)
        if snapshot is None:
            raise SnapshotNotFoundError(
                f"The VM {vm_name} has no snapshot named {name}; `bungalow snapshot ls "
                f"{vm_name}` lists its snapshots."
            )
        return snapshot

    def list(self, vm_name: str) -> builtins.list[SnapshotRecord]:
        return self.store.snapshots(self.store.get(vm_name).id)

    # -- create --------------------------------------------------------------------------------

    async def create(self, vm_name: str, name: str) -> SnapshotRecord:
        validate_name(name, what="snapshot")
        async with self.m.lock(vm_name):
            vm = self.store.get(vm_name)
            if self.store.find_snapshot(vm.id, name) is not None:
                raise ConflictError(
                    f"The VM {vm_name} already has a snapshot named {name}; choose another "
                    f"name or remove it with `bungalow snapshot rm {vm_name} {name}`."
                )
            snapshot = await self.capture(vm, name=name, purpose="user")
            kind = "memory, devices and disk" if snapshot.kind == "full" else "disk only"
            self.store.add_event(vm_name, "snapshot", f"snapshot {name} taken ({kind})")
            return snapshot

    async def capture(
        self,
        vm: VmRecord,
        *,
        name: str,
        purpose: str,
        detached: bool = False,
        monitor: Monitor | None = None,
        template_key: str | None = None,
    ) -> SnapshotRecord:
        """Save ``vm`` (its lock held by the caller) into a new snapshot; all or nothing.

        ``monitor`` is for a VM the manager does not run (a template being made).
        """
        if vm.state in (VmState.RUNNING, VmState.PAUSED):
            kind = "full"
        elif vm.state in (VmState.STOPPED, VmState.CREATED, VmState.FAILED):
            kind = "disk"
        else:
            raise InvalidStateError(
                f"Cannot snapshot {vm.name} while it is {vm.state}; wait until it is running "
                "or stopped."
            )
        image = self.m.images.get(vm.image_id)
        accel = self.m.accel_for(vm)
        snapshot = SnapshotRecord(
            id=secrets.token_hex(6),
            name=name,
            vm_id="" if detached else vm.id,
            vm_name=vm.name,
            kind=kind,
            purpose=purpose,
            image_id=vm.image_id,
            profile=vm.profile,
            cpus=vm.cpus,
            memory=vm.memory,
            disk_size=vm.disk_size,
            accel=accel,
            qemu=qemu_version(),
            digests={},
            size=0,
            cmdline=vm.cmdline,
            base_snapshot=vm.base_snapshot,
            template_key=template_key,
        )
        directory = self.directory(snapshot)
        directory.mkdir(parents=True, mode=0o700)
        try:
            began = time.monotonic()
            if kind == "full":
                spec = self.m.spec_for(vm, image, accel)
                await capture_running(monitor or self.m.monitor(vm), spec, directory)
            else:
                await capture_disk(self.m.vm_dir(vm) / "disk.qcow2", directory)
            names = FULL_FILES if kind == "full" else DISK_FILES
            digests = await asyncio.to_thread(snapshot_files.checksums, directory, names)
            snapshot = snapshot.with_changes(digests=digests, size=tree_allocated(directory))
            self.store.insert_snapshot(snapshot)
            log.info("%s: %s snapshot in %.2fs", vm.name, kind, time.monotonic() - began)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return snapshot

    # -- checks --------------------------------------------------------------------------------

    async def verify(self, snapshot: SnapshotRecord, accel: str) -> Image:
        base_exists = snapshot.base_snapshot is None or (
            self.store.snapshot_by_id(snapshot.base_snapshot) is not None
        )
        await snapshot_files.verify(
            snapshot,
            self.directory(snapshot),
            self.m.images,
            qemu=qemu_version(),
            accel=accel,
            base_exists=base_exists,
        )
        return self.m.images.get(snapshot.image_id)

    # -- restore -------------------------------------------------------------------------------

    async def restore(self, vm_name: str, name: str) -> VmRecord:
        async with self.m.lock(vm_name):
            vm = self.store.get(vm_name)
            snapshot = self.get(vm_name, name)
            if vm.state in (VmState.STARTING, VmState.STOPPING, VmState.SUSPENDED):
                raise InvalidStateError(
                    f"Cannot restore {vm_name} while it is {vm.state}; wait until it is "
                    "running or stopped (a suspended VM: `bungalow start` it first)."
                )
            if snapshot.kind == "disk" and vm.state in ACTIVE_STATES:
                raise InvalidStateError(
                    f"The snapshot {name} holds only a disk; stop {vm_name} first with "
                    f"`bungalow stop {vm_name}`, then restore it."
                )
            image = await self.verify(snapshot, self.m.accel_for(vm))
            directory = self.directory(snapshot)
            vm_dir = self.m.vm_dir(vm)
            staged = vm_dir / "disk.qcow2.restore"
            await asyncio.to_thread(sparse_copy, directory / "disk.qcow2", staged)
            if vm.state in ACTIVE_STATES:
                await self.m.shutdown_now(vm)
                vm = self.store.get(vm_name).with_changes(state=VmState.STOPPED, pid=None)
                self.store.update(vm)
            kept = vm_dir / "disk.qcow2.before-restore"
            os.replace(vm_dir / "disk.qcow2", kept)
            os.replace(staged, vm_dir / "disk.qcow2")
            vm = vm.with_changes(base_snapshot=snapshot.base_snapshot)
            try:
                if snapshot.kind == "full":
                    vm = await self.start_from(vm, snapshot, image, identity=False)
                else:
                    vm = vm.with_changes(cmdline=None)
            except BaseException as exc:
                os.replace(kept, vm_dir / "disk.qcow2")
                message = exc.message if isinstance(exc, BungalowError) else str(exc)
                self.store.update(
                    self.store.get(vm_name).with_changes(state=VmState.STOPPED, pid=None)
                )
                self.store.add_event(vm_name, "restore-failed", message)
                raise
            kept.unlink()
            self.store.update(vm)
            self.store.add_event(vm_name, "restored", f"restored snapshot {name}")
        await self.collect()
        return vm

    async def start_from(
        self, vm: VmRecord, snapshot: SnapshotRecord, image: Image, *, identity: bool
    ) -> VmRecord:
        """Run ``vm`` from ``snapshot``'s memory and devices (its disk is already in place)."""
        self.store.update(vm.with_changes(state=VmState.STARTING, error=None))
        spec = self.m.spec_for(vm, image, snapshot.accel)
        directory = self.directory(snapshot)
        runtime = await boot.resume_snapshot(
            spec,
            directory / "state",
            cmdline=snapshot.cmdline,
            ram=directory / "ram",
            name=vm.name,
            net_bw=netshaping.net_bw(vm),
        )
        try:
            await boot.sync_guest(runtime, vm, identity=identity)
            await self.m.apply_limits(vm, runtime)
        except BaseException:
            await boot.kill(runtime)
            raise
        return self.m.adopt_runtime(vm.with_changes(cmdline=snapshot.cmdline), runtime)

    # -- clone ---------------------------------------------------------------------------------

    async def clone(
        self, source: str, name: str, snapshot_name: str | None = None, *, created_by: str = ""
    ) -> VmRecord:
        """A new VM from ``source``'s snapshot, or from ``source`` as it is now."""
        validate_name(name)
        if self.store.find(name) is not None:
            raise ConflictError(
                f"A VM named {name} already exists; choose another name or remove it "
                f"with `bungalow rm {name}`."
            )
        origin = self.store.get(source)
        if snapshot_name is not None:
            snapshot = self.get(source, snapshot_name)
        else:
            snapshot = await self.fork_snapshot(source)
        try:
            request = CloneRequest.inheriting(origin, name, created_by=created_by)
            return await self.clone_from(snapshot, request)
        finally:
            await self.collect()

    async def fork_snapshot(self, source: str) -> SnapshotRecord:
        """A snapshot of ``source`` as it is now, kept only while clones use it."""
        async with self.m.lock(source):
            vm = self.store.get(source)
            return await self.capture(
                vm, name=f"fork-{secrets.token_hex(4)}", purpose="fork", detached=True
            )

    async def fork(self, source: str, count: int, names: Sequence[str]) -> builtins.list[VmRecord]:
        """``count`` independent copies of ``source`` as it runs now."""
        if count < 1 or count != len(names):
            raise UserError("Fork needs a count of 1 or more; ask for at least one copy.")
        vm = self.store.get(source)
        snapshot = await self.fork_snapshot(source)
        children: builtins.list[VmRecord] = []
        try:
            for child in names:
                request = CloneRequest.inheriting(
                    vm, child, sandbox=vm.sandbox, expires_at=vm.expires_at
                )
                children.append(await self.clone_from(snapshot, request))
        except BaseException:
            for made in children:
                with contextlib.suppress(BungalowError):
                    await self.m.remove(made.name)
            raise
        finally:
            await self.collect()
        return children

    async def clone_from(self, snapshot: SnapshotRecord, request: CloneRequest) -> VmRecord:
        """Make and start the VM ``request`` describes from ``snapshot``; all or nothing."""
        validate_name(request.name)
        t0 = time.monotonic()
        accel = snapshot.accel if snapshot.kind == "full" else "auto"
        image = await self.verify(snapshot, snapshot.accel if snapshot.kind == "full" else "")
        t1 = time.monotonic()
        async with self.m.lock(request.name):
            vm = VmRecord(
                id=secrets.token_hex(6),
                name=request.name,
                state=VmState.CREATED,
                image_id=snapshot.image_id,
                image_name=image.name or image.short_id,
                profile=snapshot.profile,
                cpus=snapshot.cpus,
                memory=snapshot.memory,
                disk_size=snapshot.disk_size,
                accel=accel,
                mac=random_mac(),
                machine_id=secrets.token_hex(16),
                base_snapshot=snapshot.id,
                parent=request.parent,
                sandbox=request.sandbox,
                expires_at=request.expires_at,
                pool=request.pool,
                project=request.project,
                owner=request.owner,
                labels=request.labels,
                created_by=request.created_by,
                origin=_origin(snapshot),
                limits=request.limits,
                ports=list(request.ports),
            )
            self.m.check_fits(vm)
            boot.check_ports_free(vm.ports, boot.claimed_ports(self.store.list()))
            self.store.insert(vm)
            try:
                disk = self.directory(snapshot) / "disk.qcow2"
                await asyncio.to_thread(
                    boot.create_disk, self.m.vm_dir(vm), image, vm.disk_size, backing=disk
                )
                t2 = time.monotonic()
                if snapshot.kind == "full":
                    vm = await self.start_from(vm, snapshot, image, identity=True)
                else:
                    vm = await self.m.boot_record(vm, image)
            except BaseException:
                await self.m.discard(vm)
                raise
            log.info(
                "%s cloned: checks %.3fs, disk %.3fs, start %.3fs",
                vm.name, t1 - t0, t2 - t1, time.monotonic() - t2,
            )  # fmt: skip
            origin = f"snapshot {snapshot.name} of {snapshot.vm_name}"
            self.store.add_event(vm.name, "created", f"cloned from {origin}")
            return vm

    # -- remove --------------------------------------------------------------------------------

    async def remove(self, vm_name: str, name: str) -> None:
        async with self.m.lock(vm_name):
            snapshot = self.get(vm_name, name)
            self._refuse_if_used(snapshot)
            await self._delete(snapshot)
            self.store.add_event(vm_name, "snapshot-removed", f"snapshot {name} removed")


def _origin(snapshot: SnapshotRecord) -> str:
    """A clone's creation record: which snapshot of which VM it was made from."""
    if snapshot.purpose == "template":
        return "sandbox template"
    if snapshot.purpose == "fork":
        return f"fork of {snapshot.vm_name}"
    return f"snapshot {snapshot.name} of {snapshot.vm_name}"
