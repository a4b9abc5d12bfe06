"""How records are shown through the API: VMs, snapshots and images as response models."""

from __future__ import annotations

import socket
from dataclasses import asdict

from bungalow import __version__
from bungalow.daemon.accounting.ledger import UsageLedger
from bungalow.daemon.api.schemas import (
    AccelInfo,
    ArchitectureInfo,
    FirmwareInfo,
    HostInfo,
    ImageInfo,
    NicInfo,
    SnapshotInfo,
    VmCostInfo,
    VmInfo,
)
from bungalow.daemon.images.service import Images
from bungalow.daemon.state.lifecycle import ACTIVE_STATES, VmState
from bungalow.daemon.state.records import SnapshotRecord, VmRecord
from bungalow.daemon.vms.balloon import frees_host_memory, has_balloon
from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import NotFoundError
from bungalow.host.files import allocated
from bungalow.images.store import Image
from bungalow.provision.sshkeys import fingerprint
from bungalow.qemu import firmware


class Views:
    def __init__(self, vms: VmManager, ledger: UsageLedger, images: Images) -> None:
        self.vms = vms
        self.ledger = ledger
        self.images = images

    def vm(self, vm: VmRecord) -> VmInfo:
        now = self.vms.clock.now()
        quiet = None
        if vm.state is VmState.RUNNING:
            quiet = now - max(vm.last_active or 0.0, vm.started or 0.0, vm.created)
        used = allocated(self.vms.vm_dir(vm) / "disk.qcow2")
        snapshots = sum(snapshot.size for snapshot in self.vms.store.snapshots.list(vm.id))
        return VmInfo(
            id=vm.id,
            name=vm.name,
            state=vm.state,
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
            limits_pending=self.vms.pending_limits(vm),
            project=vm.project,
            owner=vm.owner,
            labels=vm.labels,
            created_by=vm.created_by,
            origin=vm.origin,
            cost=VmCostInfo(**asdict(self.ledger.cost_of(vm.id))),
            on_expiry=None if vm.expires_at is None else vm.on_expiry,
            expires_in=None if vm.expires_at is None else vm.expires_at - now,
            lease_warned=vm.lease_warned is not None,
            idle=vm.idle,
            quiet_for=quiet,
            operation=vm.operation,
            networks=[
                NicInfo(network=nic.network, address=str(nic.address), mac=nic.mac)
                for nic in self.vms.nics_of(vm)
            ],
            cloud_init=vm.user_data is not None,
            ssh_keys=[fingerprint(key) for key in vm.ssh_keys],
            media=self.medium_name(vm),
            firmware=vm.firmware,
            tpm=vm.tpm,
            memory_min=vm.memory_min,
            balloon=has_balloon(vm) if vm.pid is None else frees_host_memory(vm, vm.pid),
        )

    def medium_name(self, vm: VmRecord) -> str | None:
        """The name (else short id) of the ISO image in the VM's CD-ROM drive, if any."""
        if vm.media is None:
            return None
        try:
            image = self.images.get(vm.media)
        except NotFoundError:
            return vm.media[:12]
        return image.name or image.short_id

    def snapshot(self, snapshot: SnapshotRecord) -> SnapshotInfo:
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
            used_by=self.vms.store.snapshots.dependents(snapshot.id),
        )

    def image(self, image: Image, caller: str | None = None) -> ImageInfo:
        """``image`` as ``caller`` (a project; None for the admin) may see it: a project
        sees its own VMs among the image's users, never another tenant's names."""
        return ImageInfo(
            id=image.id,
            name=image.name or image.short_id,
            kind=image.kind,
            flavour=image.flavour,
            size=image.size,
            virtual_size=image.virtual_size,
            created=image.created.timestamp(),
            os_release=image.os_release,
            kernel_version=image.kernel_version,
            used_by=self.images.users(image, project=caller),
            firmware=image.firmware,
            arch=image.arch,
        )

    def host(self) -> HostInfo:
        """The host's capacity, the accelerator chosen and why, and what is allocated."""
        admission = self.vms.admission
        capacity = admission.capacity()
        allocation = admission.allocation()
        choice = self.vms.host.choice()
        vms = self.vms.list()
        return HostInfo(
            hostname=socket.gethostname(),
            version=__version__,
            cpus=capacity.cpus,
            memory=capacity.memory_bytes,
            memory_available=capacity.memory_available,
            disk_total=capacity.disk_total,
            disk_free=capacity.disk_free,
            data_dir=str(self.vms.data.root),
            qemu=self.vms.host.qemu_version,
            accel=AccelInfo(name=choice.name, reason=choice.reason, probe_ms=choice.probe_ms),
            architectures=[
                ArchitectureInfo(
                    name=arch.arch,
                    qemu_binary=arch.qemu_binary,
                    installed=arch.installed,
                    package=arch.package,
                    accel=AccelInfo(
                        name=arch.accel.name,
                        reason=arch.accel.reason,
                        probe_ms=arch.accel.probe_ms,
                    ),
                    binfmt=arch.binfmt,
                )
                for arch in self.vms.host.architectures()
            ],
            vms=len(vms),
            vms_running=sum(1 for vm in vms if vm.state in ACTIVE_STATES),
            allocated_cpus=allocation.allocated.cpus,
            allocated_memory=allocation.allocated.memory,
            allocated_disk=allocation.allocated.disk,
            ratios=asdict(allocation.ratios),
            limit=asdict(allocation.limit),
            free=asdict(allocation.free),
            firmwares=[
                FirmwareInfo(
                    name=f.name, installed=f.installed, package=f.package,
                    code=None if f.code is None else str(f.code),
                    vars_template=None if f.vars_template is None else str(f.vars_template),
                )
                for f in firmware.offered()
            ],
        )  # fmt: skip
