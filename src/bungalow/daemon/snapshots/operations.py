"""Snapshots, restores and clones: the daemon's operations on saved machine states.

- ``create``: a running (or paused) VM is saved whole -- memory, devices and
  disk -- with the guest paused for the copy (see capture.py); a stopped VM's
  disk alone is saved.
- ``restore``: the VM goes back to the snapshot; a full one brings the exact
  running machine back (processes, files, memory). Everything the snapshot
  needs is checked before the VM is touched, and if the new QEMU still fails
  the VM's own disk is put back (the VM is then ``failed``, and starts afresh).
- ``clone``: a new VM running from a snapshot (or from the source VM as it is
  now): its disk is a copy-on-write layer on the snapshot's disk and its RAM
  the snapshot's memory file mapped privately, so clones share every page none
  of them has written. It then gets its own identity (see agent_identity.py).

A snapshot is kept while any VM or snapshot disk is layered on it (keeper.py).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import time
from collections.abc import Sequence

from bungalow.daemon.snapshots import files as snapshot_files
from bungalow.daemon.snapshots.capture import DISK_FILES, FULL_FILES, capture_disk, capture_running
from bungalow.daemon.snapshots.keeper import SnapshotKeeper
from bungalow.daemon.state.lifecycle import ACTIVE_STATES, VmState
from bungalow.daemon.state.records import Operation, Purpose, SnapshotRecord, VmRecord
from bungalow.daemon.state.store import Store
from bungalow.daemon.vms import boot, netshaping
from bungalow.daemon.vms import firmware as firmware_files
from bungalow.daemon.vms.manager import VmManager, message_of
from bungalow.daemon.vms.nics import AttachedNic, NetworkChoice, with_taps
from bungalow.daemon.vms.plan import clone_origin, plan_clone
from bungalow.daemon.vms.requests import CloneRequest, Ownership
from bungalow.errors import (
    BungalowError,
    ConflictError,
    InvalidStateError,
    SnapshotError,
    SnapshotNotFoundError,
    UserError,
)
from bungalow.host.files import sparse_copy, tree_allocated
from bungalow.images.store import Image
from bungalow.names import validate_name
from bungalow.qemu import hotplug
from bungalow.qemu.monitor import Monitor

log = logging.getLogger(__name__)

#: What ``fork`` makes at most in one call.
MAX_FORK = 64
#: Next to the VM's disk while a restore is under way: the snapshot's copy, then its own.
STAGED = "disk.qcow2.restore"
KEPT = "disk.qcow2.before-restore"


class Snapshots:
    """The snapshot operations, on top of the VM service's locks, records and runtimes."""

    def __init__(self, vms: VmManager, keeper: SnapshotKeeper) -> None:
        self.vms = vms
        self.keeper = keeper
        self.store: Store = vms.store

    # -- queries -------------------------------------------------------------------------------

    def get(self, vm_name: str, name: str) -> SnapshotRecord:
        vm = self.vms.get(vm_name)
        snapshot = self.store.snapshots.find(vm.id, name)
        if snapshot is None:
            raise SnapshotNotFoundError(
                f"The VM {vm_name} has no snapshot named {name}; `bungalow snapshot ls "
                f"{vm_name}` lists its snapshots."
            )
        return snapshot

    def list(self, vm_name: str) -> builtins.list[SnapshotRecord]:
        return self.store.snapshots.list(self.vms.get(vm_name).id)

    # -- create --------------------------------------------------------------------------------

    async def create(self, vm_name: str, name: str) -> SnapshotRecord:
        validate_name(name, what="snapshot")
        async with self.vms.locked(vm_name):
            vm = self.vms.get(vm_name)
            if self.store.snapshots.find(vm.id, name) is not None:
                raise ConflictError(
                    f"The VM {vm_name} already has a snapshot named {name}; choose another "
                    f"name or remove it with `bungalow snapshot rm {vm_name} {name}`."
                )
            snapshot = await self.capture(vm, name=name, purpose=Purpose.USER)
            kind = "memory, devices and disk" if snapshot.kind == "full" else "disk only"
            self.store.events.add(vm_name, "snapshot", f"snapshot {name} taken ({kind})")
            return snapshot

    async def capture(
        self, vm: VmRecord, *, name: str, purpose: Purpose, detached: bool = False
    ) -> SnapshotRecord:
        """Save ``vm`` (its lock held by the caller) into a new snapshot; all or nothing.

        A running VM is marked with the SNAPSHOT operation while it is paused for
        the copy, so a daemon killed meanwhile lets it carry on (recovery.py).
        """
        if vm.state in (VmState.RUNNING, VmState.PAUSED):
            marked = vm.operation is None  # a suspend or a deletion marks its own
            if marked:
                self.store.vms.begin(vm.id, Operation.SNAPSHOT)
            try:
                return await self._save(vm, name, purpose, detached, self.vms.monitor(vm))
            finally:
                if marked:
                    self.store.vms.end(vm.id)
        if vm.state in (VmState.STOPPED, VmState.CREATED, VmState.FAILED):
            return await self._save(vm, name, purpose, detached, None)
        raise InvalidStateError(
            f"Cannot snapshot {vm.name} while it is {vm.state}; wait until it is running "
            "or stopped."
        )

    async def capture_transient(
        self, vm: VmRecord, monitor: Monitor, *, name: str, template_key: str
    ) -> SnapshotRecord:
        """Save a running VM that has no row (a sandbox template) into a detached snapshot."""
        return await self._save(vm, name, Purpose.TEMPLATE, True, monitor, template_key)

    async def _save(
        self,
        vm: VmRecord,
        name: str,
        purpose: Purpose,
        detached: bool,
        monitor: Monitor | None,
        template_key: str | None = None,
    ) -> SnapshotRecord:
        image = self.vms.images.get(vm.image_id)
        accel = self.vms.accel_for(vm)
        nics = await asyncio.to_thread(self.vms.nics_of, vm)
        # Only micro VMs take NICs live (pc boots its NICs as virtio-net-pci already).
        live_nics = monitor is not None and vm.profile == "micro"
        if live_nics and monitor is not None and await hotplug.plugged(monitor):
            raise InvalidStateError(
                f"{vm.name} has a NIC connected while it runs, which a saved machine state "
                f"cannot hold yet; stop and start it (`bungalow stop {vm.name}`, `bungalow "
                f"start {vm.name}`), then try again."
            )
        if (
            live_nics
            and monitor is not None
            and {f"nic{nic.index}" for nic in nics} - await hotplug.boot_nics(monitor)
        ):
            raise InvalidStateError(
                f"{vm.name}'s NICs are not the ones its records name (a network disconnect "
                f"was cut short); run `bungalow network disconnect` for it again, or stop and "
                f"start it, then try again."
            )
        snapshot = SnapshotRecord(
            id=secrets.token_hex(6),
            name=name,
            vm_id="" if detached else vm.id,
            vm_name=vm.name,
            kind="full" if monitor is not None else "disk",
            purpose=purpose,
            image_id=vm.image_id,
            profile=vm.profile,
            cpus=vm.cpus,
            memory=vm.memory,
            disk_size=vm.disk_size,
            accel=accel,
            qemu=self.vms.host.qemu_version,
            digests={},
            size=0,
            cmdline=vm.cmdline,
            base_snapshot=vm.base_snapshot,
            template_key=template_key,
            created=self.store.clock.now(),
            networks=[nic.network for nic in nics],
            firmware=vm.firmware,
            tpm=vm.tpm,
            media=vm.media,
        )
        directory = self.keeper.directory(snapshot)
        directory.mkdir(parents=True, mode=0o700)
        try:
            began = time.monotonic()
            if monitor is not None:
                spec = await asyncio.to_thread(self.vms.spec_for, vm, image, accel, nics)
                await capture_running(monitor, spec, directory, vm.id)
            else:
                await capture_disk(self.vms.vm_dir(vm) / "disk.qcow2", directory)
            names = (FULL_FILES if monitor is not None else DISK_FILES) + firmware_files.present(
                directory
            )
            digests = await asyncio.to_thread(snapshot_files.checksums, directory, names)
            size = await asyncio.to_thread(tree_allocated, directory)
            snapshot = snapshot.with_changes(digests=digests, size=size)
            self.store.snapshots.insert(snapshot)
            log.info("%s: %s snapshot in %.2fs", vm.name, snapshot.kind, time.monotonic() - began)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        return snapshot

    # -- checks --------------------------------------------------------------------------------

    async def verify(self, snapshot: SnapshotRecord, accel: str) -> Image:
        """The image ``snapshot`` needs, once its files and dependencies check out
        (SnapshotError with a sentence otherwise)."""
        base_exists = snapshot.base_snapshot is None or (
            self.store.snapshots.by_id(snapshot.base_snapshot) is not None
        )
        await snapshot_files.verify(
            snapshot,
            self.keeper.directory(snapshot),
            self.vms.images,
            qemu=self.vms.host.qemu_version,
            accel=accel,
            base_exists=base_exists,
        )
        return self.vms.images.get(snapshot.image_id)

    # -- restore -------------------------------------------------------------------------------

    async def restore(self, vm_name: str, name: str) -> VmRecord:
        async with self.vms.locked(vm_name):
            vm = self.vms.get(vm_name)
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
            image = await self.verify(snapshot, self.vms.accel_for(vm))
            vm_dir = self.vms.vm_dir(vm)
            staged, kept, disk = vm_dir / STAGED, vm_dir / KEPT, vm_dir / "disk.qcow2"
            vm = self.store.vms.begin(vm.id, Operation.RESTORE)
            try:
                await asyncio.to_thread(
                    sparse_copy, self.keeper.directory(snapshot) / "disk.qcow2", staged
                )
                if vm.state in ACTIVE_STATES:
                    await self.vms.end_qemu(vm)
                    vm = self.store.vms.set_state(vm.id, VmState.STOPPED, pid=None)
                os.replace(disk, kept)
                os.replace(staged, disk)
                medium = vm.media
                try:
                    # The snapshot's medium: its saved guest state expects the drive it had.
                    vm = self.store.vms.set_media(vm.id, snapshot.media)
                    with firmware_files.swapped_in(
                        snapshot, self.keeper.directory(snapshot), vm_dir
                    ):
                        if snapshot.kind == "full":
                            vm = await self.start_from(vm, snapshot, image, identity=False)
                    cmdline = snapshot.cmdline if snapshot.kind == "full" else None
                    vm = self.store.vms.set_disk_origin(vm.id, snapshot.base_snapshot, cmdline)
                except BaseException as exc:
                    os.replace(kept, disk)
                    self.store.vms.set_media(vm.id, medium)
                    self._failed(vm, f"restoring snapshot {name} failed ({message_of(exc)}); "
                                 "its own disk is back in place")  # fmt: skip
                    raise
                kept.unlink()
            finally:
                staged.unlink(missing_ok=True)
                self.store.vms.end(vm.id)
            self.store.events.add(vm_name, "restored", f"restored snapshot {name}")
        await self.keeper.collect()
        return self.vms.get(vm_name)

    def _failed(self, vm: VmRecord, reason: str) -> None:
        current = self.store.vms.by_id(vm.id)
        if current is not None and current.state is VmState.STARTING:
            self.store.vms.set_state(vm.id, VmState.FAILED, pid=None, error=reason)
        self.store.events.add(vm.name, "restore-failed", reason)

    async def start_from(
        self, vm: VmRecord, snapshot: SnapshotRecord, image: Image, *, identity: bool
    ) -> VmRecord:
        """Run ``vm`` from ``snapshot``'s memory and devices (its disk is already in place)."""
        nics = await asyncio.to_thread(self.vms.nics_of, vm)
        check_devices(snapshot, nics)
        vm = self.store.vms.set_state(vm.id, VmState.STARTING, error=None)
        spec = await asyncio.to_thread(self.vms.spec_for, vm, image, snapshot.accel, nics)
        directory = self.keeper.directory(snapshot)
        async with with_taps(spec, vm.id, nics) as tapped:
            runtime = await boot.resume_snapshot(
                tapped,
                directory / "state",
                cmdline=snapshot.cmdline,
                ram=directory / "ram",
                net_bw=netshaping.net_bw(vm),
            )
        try:
            await boot.sync_guest(runtime, vm, identity=identity, nics=nics if identity else ())
            await self.vms.apply_limits(vm, runtime)
        except BaseException:
            await boot.kill(runtime)
            raise
        return self.vms.adopt(vm, runtime, cmdline=snapshot.cmdline)

    # -- clone ---------------------------------------------------------------------------------

    async def clone(
        self, source: str, name: str, snapshot_name: str | None = None, *, created_by: str = ""
    ) -> VmRecord:
        """A new VM from ``source``'s snapshot, or from ``source`` as it is now."""
        validate_name(name)
        if self.store.vms.find(name) is not None:
            raise ConflictError(
                f"A VM named {name} already exists; choose another name or remove it "
                f"with `bungalow rm {name}`."
            )
        origin = self.vms.get(source)
        if snapshot_name is not None:
            snapshot = self.get(source, snapshot_name)
        else:
            snapshot = await self.fork_snapshot(source)
        try:
            ownership = Ownership.of(origin)
            if created_by:
                ownership = dataclasses.replace(ownership, created_by=created_by)
            request = CloneRequest.inheriting(origin, name, ownership=ownership)
            return await self.clone_from(snapshot, request)
        finally:
            await self.keeper.collect()

    async def fork_snapshot(self, source: str) -> SnapshotRecord:
        """A snapshot of ``source`` as it is now, kept only while clones use it."""
        async with self.vms.locked(source):
            vm = self.vms.get(source)
            return await self.capture(
                vm, name=f"fork-{secrets.token_hex(4)}", purpose=Purpose.FORK, detached=True
            )

    async def fork(self, source: str, count: int, names: Sequence[str]) -> builtins.list[VmRecord]:
        """``count`` independent copies of ``source`` as it runs now (1 to 64; UserError
        otherwise); all or none."""
        if not 1 <= count <= MAX_FORK or count != len(names):
            raise UserError(f"Fork makes 1 to {MAX_FORK} copies at a time; asked for {count}.")
        vm = self.vms.get(source)
        snapshot = await self.fork_snapshot(source)
        children: builtins.list[VmRecord] = []
        try:
            for child in names:
                request = CloneRequest.inheriting(
                    vm, child, sandbox=vm.sandbox, expires_at=vm.expires_at,
                    on_expiry=vm.on_expiry,
                )  # fmt: skip
                children.append(await self.clone_from(snapshot, request))
        except BaseException:
            for made in children:
                with contextlib.suppress(BungalowError):
                    await self.vms.remove(made.name)
            raise
        finally:
            await self.keeper.collect()
        return children

    async def clone_from(self, snapshot: SnapshotRecord, request: CloneRequest) -> VmRecord:
        """Make and start the VM ``request`` describes from ``snapshot``; all or nothing."""
        validate_name(request.name)
        t0 = time.monotonic()
        image = await self.verify(snapshot, snapshot.accel if snapshot.kind == "full" else "")
        t1 = time.monotonic()
        disk = self.keeper.directory(snapshot) / "disk.qcow2"

        async def bring_up(vm: VmRecord) -> VmRecord:
            if snapshot.kind == "full":
                return await self.start_from(vm, snapshot, image, identity=True)
            return await self.vms.boot(vm, image)

        async with self.vms.locked(request.name):
            vm = plan_clone(snapshot, request, image)
            vm = await self.vms.make(
                vm, image, backing=disk, bring_up=bring_up,
                event=f"cloned from {clone_origin(snapshot)}",
                networks=request.networks
                or tuple(NetworkChoice(network) for network in snapshot.networks),
            )  # fmt: skip
        log.info("%s cloned: checks %.3fs, made %.3fs", vm.name, t1 - t0, time.monotonic() - t1)
        return vm

    # -- remove --------------------------------------------------------------------------------

    async def remove(self, vm_name: str, name: str) -> None:
        async with self.vms.locked(vm_name):
            snapshot = self.get(vm_name, name)
            self.keeper.refuse_if_used(snapshot)
            await self.keeper.discard(snapshot)
            self.store.events.add(vm_name, "snapshot-removed", f"snapshot {name} removed")


def check_devices(snapshot: SnapshotRecord, nics: Sequence[AttachedNic]) -> None:
    """SnapshotError unless the VM has the NICs ``snapshot``'s saved devices include (a
    full snapshot loads only into a machine of the same devices). One NIC may stand in
    for a snapshot's user-mode one: the same virtio-net in the same slot, whose saved
    features are a subset of what a TAP with a vnet header offers."""
    if snapshot.kind != "full":
        return
    have = [nic.network for nic in nics]
    if not snapshot.networks and len(have) == 1:
        return  # its user-mode NIC's device, now on a TAP (a sandbox on a network)
    if have != snapshot.networks:
        saved = ", ".join(snapshot.networks) or "no private network"
        now = ", ".join(have) or "no private network"
        raise SnapshotError(
            f"The snapshot {snapshot.name} was taken with NICs on {saved}, and the VM now "
            f"has them on {now}; connect or disconnect networks to match while it is "
            "stopped, or clone the snapshot instead."
        )
