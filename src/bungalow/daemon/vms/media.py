"""Installer VMs' CD-ROM media: which ISO is in the drive, ejecting and inserting it.

An installer VM (``launch --iso``) is a pc VM whose image is an ``iso`` image: a
blank disk, no agent, and an ``ide-cd`` drive after the disk in the boot order
(qemu/argv.py), so it boots the CD until something is installed on the disk. The
medium in the drive is the VM's ``media`` column, the ISO image's id (NULL: the
tray is empty), so a stop and start, or a daemon started after a crash, keeps it.
A running VM's medium changes live through QMP (``eject`` with force,
``blockdev-change-medium`` read-only); a stopped one's only in its record, for
its next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms.requests import CreateRequest
from bungalow.errors import InvalidStateError, QemuError, UserError
from bungalow.images import iso
from bungalow.images.store import Image, ImageStore
from bungalow.qemu.argv import CDROM_ID
from bungalow.qemu.monitor import Monitor

if TYPE_CHECKING:
    from bungalow.daemon.vms.manager import VmManager

#: States in which the medium is changed in QEMU as well as in the record.
_LIVE = (VmState.RUNNING, VmState.PAUSED)
#: States in which it is changed in the record only (the next start uses it).
_RECORDED = (VmState.CREATED, VmState.STOPPED, VmState.FAILED)


def has_drive(image: Image) -> bool:
    """Whether VMs of ``image`` have a CD-ROM drive: installer VMs (an ``iso`` image's)."""
    return image.kind == "iso"


def medium_path(images: ImageStore, vm: VmRecord) -> Path | None:
    """The ISO file in the VM's drive, None when its tray is empty (blocking: reads files)."""
    return None if vm.media is None else images.get(vm.media).disk


async def resolve(images: ImageStore, ref: str) -> Image:
    """The ``iso`` image ``ref`` names: an image's name or id, or the absolute path of an
    ISO file on this host, imported first unless its content is stored already.
    UserError with a sentence for an image that is not an ISO, or a file that is not one
    (then nothing is copied)."""
    if ref.startswith("/"):
        return await asyncio.to_thread(iso.import_iso, images, Path(ref))
    image = await asyncio.to_thread(images.get, ref)
    if image.kind != "iso":
        raise UserError(
            f"The image {image.name or image.short_id} is a {image.kind} image, not an ISO; "
            "give an ISO image's name (`bungalow image ls` shows the kind) or an ISO file's "
            "path."
        )
    return image


@contextlib.asynccontextmanager
async def imported(
    images: ImageStore, ref: str, vms: Callable[[], Iterable[VmRecord]]
) -> AsyncIterator[Image]:
    """:func:`resolve` for a new VM: an ISO file this import copied into the store is
    removed again if the block fails (a launch refused after the copy leaves nothing),
    unless one of ``vms`` uses it meanwhile."""
    known = await asyncio.to_thread(lambda: {image.id for image in images.list()})
    image = await resolve(images, ref)
    try:
        yield image
    except BaseException:
        if image.id not in known and not any(image.id in (vm.image_id, vm.media) for vm in vms()):
            await asyncio.to_thread(images.remove, image.id)
        raise


def check_installer(request: CreateRequest) -> None:
    """UserError for an installer VM (``request.iso`` set) asked for what it cannot have,
    before any ISO file is imported: an ``image`` besides the ISO, or no blank disk."""
    if request.image is not None:
        raise UserError(
            f"An installer VM boots the ISO it is given, not the image {request.image}; "
            "give --iso or --image, not both."
        )
    installer_disk(request.disk)


def installer_disk(asked: int | None) -> int:
    """The size of an installer VM's blank disk; UserError when none is asked for."""
    if asked is None:
        raise UserError(
            "An installer VM needs a blank disk to install onto; give its size with --disk "
            "(such as --disk 20G) together with --iso."
        )
    if asked < 1 << 20:
        raise UserError("An installer VM's disk must be at least 1M; use --disk 20G or so.")
    return asked


class Media:
    """Ejects and inserts the media of installer VMs (under each VM's lock)."""

    def __init__(self, vms: VmManager) -> None:
        self._vms = vms

    async def eject(self, name: str) -> VmRecord:
        """Empty the VM's drive: now through QMP if it runs, and in its record."""
        async with self._vms.locked(name):
            vm = self._checked(name, "eject its CD")
            if vm.media is None:
                return vm
            if vm.state in _LIVE:
                monitor = self._vms.monitor(vm)
                await monitor.eject(CDROM_ID)
                if await monitor.medium(CDROM_ID) is not None:
                    raise QemuError(f"QEMU kept the CD in the drive of {name}; try again.")
            vm = self._vms.store.vms.set_media(vm.id, None)
            self._vms.store.events.add(name, "media", "the CD was ejected")
            return vm

    async def insert(self, name: str, ref: str) -> VmRecord:
        """Put the ISO ``ref`` (an ISO image, or an ISO file's absolute path, imported first)
        in the VM's drive, replacing whatever is there."""
        async with self._vms.locked(name):
            vm = self._checked(name, "put a CD in")
            medium = await resolve(self._vms.images, ref)
            if vm.state in _LIVE:
                await _change_medium(self._vms.monitor(vm), medium.disk)
            vm = self._vms.store.vms.set_media(vm.id, medium.id)
            shown = medium.name or medium.short_id
            self._vms.store.events.add(name, "media", f"the CD {shown} was inserted")
            return vm

    def _checked(self, name: str, action: str) -> VmRecord:
        vm = self._vms.get(name)
        if not has_drive(self._vms.images.get(vm.image_id)):
            raise UserError(
                f"Cannot {action}: the VM {name} has no CD-ROM drive; only VMs launched with "
                "--iso have one."
            )
        if vm.state not in (*_LIVE, *_RECORDED):
            raise InvalidStateError(
                f"Cannot {action}: the VM {name} is {vm.state}; wait until it is running or "
                "stopped."
            )
        return vm


async def _change_medium(monitor: Monitor, iso: Path) -> None:
    """Put ``iso`` in the drive, read-only, through a passed descriptor: a confined QEMU
    (host/jail.py) cannot open the store's path from its run directory."""
    fd = await asyncio.to_thread(os.open, iso, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fdset = await monitor.add_fd(fd, "medium")
    finally:
        os.close(fd)
    try:
        await monitor.change_medium(CDROM_ID, f"/dev/fdset/{fdset}")
    finally:
        # QEMU closes the descriptor once the drive lets go of it (ejected, or QEMU ends).
        await monitor.remove_fd(fdset)
    if await monitor.medium(CDROM_ID) is None:
        raise QemuError("QEMU left the CD-ROM drive empty after the change; try again.")
