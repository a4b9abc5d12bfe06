"""A snapshot on disk: its files, their checksums, and the checks made before using it.

Each snapshot lives in ``<data>/snapshots/<id>/``: ``disk.qcow2`` always (a
qcow2 layered on the image, or on another snapshot's disk), plus ``ram`` (the
guest memory, a sparse flat file) and ``state`` (QEMU's device state) for a
full snapshot; and ``efivars.fd`` and ``tpm/tpm2-00.permall`` for a VM with UEFI
firmware or a TPM (vms/firmware.py). The database keeps a sha256 of each file.

Checking a 512 MiB memory file costs a read of its data; a daemon checks each
file once and then trusts it while its size, mtime and inode stay the same,
so the hundredth clone of a snapshot starts as fast as the second.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path

from bungalow.daemon.snapshots.capture import DISK_FILES, FULL_FILES
from bungalow.daemon.state.records import SnapshotRecord
from bungalow.errors import NotFoundError, SnapshotError
from bungalow.host.files import digest
from bungalow.images.store import ImageStore

#: How many files' digests are remembered (each entry is a path and four numbers).
REMEMBERED = 4096
_verified: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()


def files_of(snapshot: SnapshotRecord) -> tuple[str, ...]:
    """Its files: those of its kind, and the variable store and TPM state it was taken with."""
    base = FULL_FILES if snapshot.kind == "full" else DISK_FILES
    return base + tuple(name for name in snapshot.digests if name not in base)


def _key(path: Path) -> tuple[str, int, int, int]:
    info = path.stat()
    return (str(path), info.st_size, info.st_mtime_ns, info.st_ino)


def checksum(path: Path) -> str:
    """The file's digest, remembered against its size, mtime and inode."""
    key = _key(path)
    known = _verified.get(key)
    if known is None:
        known = digest(path)
        _verified[key] = known
        if len(_verified) > REMEMBERED:
            _verified.popitem(last=False)
    else:
        _verified.move_to_end(key)
    return known


def checksums(directory: Path, names: tuple[str, ...]) -> dict[str, str]:
    return {name: checksum(directory / name) for name in names}


def label(snapshot: SnapshotRecord) -> str:
    if snapshot.purpose == "user":
        return f"The snapshot {snapshot.name} of {snapshot.vm_name}"
    return f"The {snapshot.purpose} snapshot {snapshot.id} of {snapshot.vm_name}"


async def verify(
    snapshot: SnapshotRecord,
    directory: Path,
    images: ImageStore,
    *,
    qemu: str,
    accel: str,
    base_exists: bool,
) -> None:
    """Refuse, with a sentence, a snapshot that is damaged or whose dependencies are gone."""
    what = label(snapshot)
    remedy = "remove it with `bungalow snapshot rm`"
    try:
        images.get(snapshot.image_id)
    except NotFoundError:
        raise SnapshotError(
            f"{what} needs the image {snapshot.image_id[:12]}, which is gone; rebuild or "
            f"import that image, or {remedy}."
        ) from None
    if snapshot.base_snapshot is not None and not base_exists:
        raise SnapshotError(
            f"{what} is layered on snapshot {snapshot.base_snapshot}, which is gone; {remedy}."
        )
    if snapshot.kind == "full" and snapshot.qemu != qemu:
        raise SnapshotError(
            f"{what} was saved by {snapshot.qemu} and this host runs {qemu}, which cannot "
            f"load it; boot the VM afresh, or {remedy}."
        )
    if snapshot.kind == "full" and snapshot.accel != accel:
        raise SnapshotError(
            f"{what} was saved under {snapshot.accel} and this host now uses {accel}; "
            f"restore it with --accel {snapshot.accel}, or {remedy}."
        )
    for name in files_of(snapshot):
        path = directory / name
        if not path.is_file():
            raise SnapshotError(f"{what} is damaged: its file {name} is missing; {remedy}.")
        actual = await asyncio.to_thread(checksum, path)
        if actual != snapshot.digests.get(name):
            raise SnapshotError(
                f"{what} is damaged: its file {name} does not match its checksum; {remedy}."
            )
