"""How VMs and snapshots are shown through the API: records turned into response models."""

from __future__ import annotations

from dataclasses import asdict

from bungalow.daemon.api.schemas import SnapshotInfo, VmCostInfo, VmInfo
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.store import SnapshotRecord, VmRecord
from bungalow.daemon.vms.manager import VmManager
from bungalow.host.files import allocated


def vm_info(manager: VmManager, vm: VmRecord) -> VmInfo:
    now = manager.clock.now()
    quiet = None
    if vm.state is VmState.RUNNING:
        quiet = now - max(vm.last_active or 0.0, vm.started or 0.0, vm.created)
    used = allocated(manager.vm_dir(vm) / "disk.qcow2")
    snapshots = sum(snapshot.size for snapshot in manager.store.snapshots(vm.id))
    return VmInfo(
        id=vm.id,
        name=vm.name,
        state=str(vm.state),
        image=vm.image_name,
        image_id=vm.image_id,
        profile=vm.profile,
        cpus=vm.cpus,
        memory=vm.memory,
        disk_size=vm.disk_size,
        disk_used=used,
        ports=vm.ports,
        accel=vm.accel,
        mac=vm.mac,
        pid=vm.pid,
        created=vm.created,
        started=vm.started,
        error=vm.error,
        sandbox=vm.sandbox,
        expires_at=vm.expires_at,
        parent=vm.parent or None,
        base_snapshot=vm.base_snapshot,
        snapshots_used=snapshots,
        pooled=vm.pool is not None,
        limits=vm.limits,
        limits_pending=manager.pending_limits(vm),
        project=vm.project,
        owner=vm.owner,
        labels=vm.labels,
        created_by=vm.created_by,
        origin=vm.origin,
        cost=None if manager.usage is None else VmCostInfo(**asdict(manager.usage.cost_of(vm.id))),
        on_expiry=None if vm.expires_at is None else vm.on_expiry,
        expires_in=None if vm.expires_at is None else vm.expires_at - now,
        lease_warned=vm.lease_warned is not None,
        idle=vm.idle,
        quiet_for=quiet,
    )


def snapshot_info(manager: VmManager, snapshot: SnapshotRecord) -> SnapshotInfo:
    return SnapshotInfo(
        id=snapshot.id,
        name=snapshot.name,
        vm=snapshot.vm_name,
        kind=snapshot.kind,
        purpose=snapshot.purpose,
        created=snapshot.created,
        image_id=snapshot.image_id,
        cpus=snapshot.cpus,
        memory=snapshot.memory,
        disk_size=snapshot.disk_size,
        accel=snapshot.accel,
        qemu=snapshot.qemu,
        size=snapshot.size,
        base_snapshot=snapshot.base_snapshot,
        used_by=manager.store.snapshot_dependents(snapshot.id),
    )
