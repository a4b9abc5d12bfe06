"""Turning a request into a VM record, checked against what the host can give.

Every way a VM comes to be -- from an image (launch, a cold sandbox, a sandbox
template) or from a snapshot (clone, fork, a warm sandbox, restore-deleted) --
goes through :func:`plan_vm` or :func:`plan_clone` here, and then through the
one admission check of the manager (admission.py), so what a VM may ask for is
defined once.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from bungalow.arch import emulator_missing, host_arch, runs_natively
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import Purpose, SnapshotRecord, VmRecord
from bungalow.daemon.vms import firmware as firmware_files
from bungalow.daemon.vms import media, provisioning
from bungalow.daemon.vms.balloon import check_floor
from bungalow.daemon.vms.limits import Limits, check_memory_limit
from bungalow.daemon.vms.nics import check_choices
from bungalow.daemon.vms.requests import CloneRequest, CreateRequest
from bungalow.errors import ConflictError, UserError
from bungalow.host.ports import port_in_use
from bungalow.images.store import Image
from bungalow.qemu.argv import PortForward, random_mac
from bungalow.units import format_size

#: Host ports as (address, port, protocol).
Claimed = set[tuple[str, int, str]]
PROFILES = ("micro", "pc")
ACCELS = ("auto", "kvm", "tcg")


def plan_vm(request: CreateRequest, image: Image) -> VmRecord:
    """The record of a new VM booted from ``image``; UserError for what cannot be."""
    installer = media.has_drive(image)
    if installer:
        media.check_installer(request)
    disk = media.installer_disk(request.disk) if installer else disk_size(request.disk, image)
    if request.cpus < 1:
        raise UserError("A VM needs at least 1 CPU; use --cpus 1 or more.")
    if request.memory < 128 << 20:
        raise UserError("A VM needs at least 128M of memory; use --memory 128M or more.")
    if request.accel not in ACCELS:
        raise UserError(f"The accelerator {request.accel!r} is unknown; use auto, kvm or tcg.")
    firmware_files.check_arch(request.firmware, request.tpm, image)
    # Firmware and a TPM are the pc profile's: asking for either picks it.
    wants_pc = request.tpm or (request.firmware or image.firmware) != "bios"
    profile = request.profile or ("micro" if image.kind == "linux" and not wants_pc else "pc")
    if profile not in PROFILES:
        raise UserError(f"The machine profile {profile!r} is unknown; use micro or pc.")
    check_arch_runs(image, profile, request.accel)
    if profile == "micro" and installer:
        raise UserError("An installer VM boots its ISO through firmware; use --profile pc.")
    if profile == "micro" and image.kind != "linux":
        raise UserError(
            f"The image {image.name} is a plain disk and needs firmware; use --profile pc."
        )
    firmware = firmware_files.chosen(request.firmware, request.tpm, profile, image)
    check_floor(request.memory_min, request.memory, request.name)
    check_memory_limit(Limits.from_json(request.limits), request.memory, request.name)
    check_choices(request.networks)
    if request.networks and request.limits.get("net_bw"):
        raise UserError(
            "A network bandwidth limit (--net-bw) applies to user-mode networking only; "
            "a VM on a private network has none, so drop --net-bw or --network."
        )
    if installer and (request.user_data is not None or request.ssh_keys):
        raise UserError(
            "An installer VM has no agent or cloud-init to hand user-data or SSH keys to; "
            "launch it without --cloud-init and --ssh-key."
        )
    ownership = request.ownership
    user_data = provisioning.checked_user_data(request.user_data, image)
    ssh_keys = provisioning.checked_keys(list(request.ssh_keys))
    if ssh_keys and user_data is None and image.kind != "linux":
        # No bungalow agent in an imported disk: its cloud-init installs the keys, from the
        # seed's meta-data, for the image's default user.
        user_data = "#cloud-config\n"
    return VmRecord(
        id=secrets.token_hex(6),
        name=request.name,
        state=VmState.CREATED,
        image_id=image.id,
        image_name=image.name or image.short_id,
        profile=profile,
        cpus=request.cpus,
        memory=request.memory,
        disk_size=disk,
        ports=[str(PortForward.parse(text)) for text in request.ports],
        accel=request.accel,
        mac=random_mac(),
        machine_id=secrets.token_hex(16),
        sandbox=request.sandbox,
        expires_at=request.expires_at,
        on_expiry=request.on_expiry,
        idle=request.idle,
        limits=request.limits,
        memory_min=request.memory_min,
        project=ownership.project,
        owner=ownership.owner,
        labels=ownership.labels,
        created_by=ownership.created_by,
        origin=request.origin
        or f"{'ISO' if installer else 'image'} {image.name or image.short_id}",
        user_data=user_data,
        ssh_keys=ssh_keys,
        media=image.id if installer else None,
        firmware=firmware,
        tpm=request.tpm,
    )


def check_arch_runs(image: Image, profile: str = "micro", accel: str = "auto") -> None:
    """UserError when this host cannot run ``image``'s architecture as asked: its QEMU is
    not installed (the sentence names the Debian package), KVM is asked for a foreign
    architecture, or the pc profile for one that has only QEMU's virt machine."""
    missing = emulator_missing(image.arch)
    if missing is not None:
        raise UserError(f"The image {image.name or image.short_id} is {image.arch}: {missing}")
    if accel == "kvm" and not runs_natively(image.arch):
        raise UserError(
            f"The image {image.name or image.short_id} is {image.arch}, which KVM cannot run "
            f"on this {host_arch()} host; use --accel tcg or auto."
        )
    if profile == "pc" and image.arch == "aarch64":
        raise UserError(
            f"The image {image.name or image.short_id} is aarch64, which boots on QEMU's "
            "virt machine (the micro profile); drop --profile pc."
        )


def disk_size(asked: int | None, image: Image) -> int:
    """The disk of a VM booted from ``image``: ``asked`` (4G or the image's size if None).

    UserError for a disk smaller than the image, whose file system would not fit.
    """
    disk = asked if asked is not None else max(image.virtual_size, 4 << 30)
    if disk < image.virtual_size:
        raise UserError(
            f"The disk size {format_size(disk)} is smaller than the image {image.name} "
            f"({format_size(image.virtual_size)}); use --disk {format_size(image.virtual_size)} "
            "or more."
        )
    return disk


def plan_clone(snapshot: SnapshotRecord, request: CloneRequest, image: Image) -> VmRecord:
    """The record of a new VM made from ``snapshot`` (its disk layered on the snapshot's)."""
    check_arch_runs(image)
    check_floor(request.memory_min, snapshot.memory, request.name)
    ownership = request.ownership
    return VmRecord(
        id=secrets.token_hex(6),
        name=request.name,
        state=VmState.CREATED,
        image_id=snapshot.image_id,
        image_name=image.name or image.short_id,
        profile=snapshot.profile,
        cpus=snapshot.cpus,
        memory=snapshot.memory,
        disk_size=snapshot.disk_size,
        accel=snapshot.accel if snapshot.kind == "full" else "auto",
        mac=random_mac(),
        machine_id=secrets.token_hex(16),
        base_snapshot=snapshot.id,
        parent=request.parent,
        sandbox=request.sandbox,
        expires_at=request.expires_at,
        on_expiry=request.on_expiry,
        pool=request.pool,
        project=ownership.project,
        owner=ownership.owner,
        labels=ownership.labels,
        created_by=ownership.created_by,
        origin=request.origin or clone_origin(snapshot),
        limits=request.limits,
        memory_min=request.memory_min,
        idle=request.idle,
        ports=[str(PortForward.parse(text)) for text in request.ports],
        user_data=request.user_data,
        ssh_keys=list(request.ssh_keys),
        firmware=snapshot.firmware,
        tpm=snapshot.tpm,
        media=snapshot.media,
    )


def clone_origin(snapshot: SnapshotRecord) -> str:
    """A clone's creation record: which snapshot of which VM it was made from."""
    if snapshot.purpose is Purpose.TEMPLATE:
        return "sandbox template"
    if snapshot.purpose is Purpose.FORK:
        return f"fork of {snapshot.vm_name}"
    return f"snapshot {snapshot.name} of {snapshot.vm_name}"


def claimed_ports(vms: Iterable[VmRecord]) -> Claimed:
    """The host ports the forwards of ``vms`` claim."""
    claimed: Claimed = set()
    for vm in vms:
        for text in vm.ports:
            port = PortForward.parse(text)
            claimed.add((port.host_addr, port.host_port, port.protocol))
    return claimed


def check_ports_free(ports: Iterable[str], claimed: Claimed) -> None:
    """ConflictError with a sentence for a forward whose host port is claimed or in use."""
    for text in ports:
        port = PortForward.parse(text)
        key = (port.host_addr, port.host_port, port.protocol)
        if key in claimed or port_in_use(port.host_addr, port.host_port, port.protocol):
            raise ConflictError(
                f"Host port {port.host_port}/{port.protocol} is already in use; "
                f"choose another host port, e.g. -p {port.host_port + 1}:{port.guest_port}."
            )
