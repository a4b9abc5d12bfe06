"""ISO 9660 media in the image store: checked, copied, and kept by their content.

An ``iso`` image is a CD-ROM medium an installer VM boots from (daemon/vms/media.py).
Its id is the sha256 of the ISO file itself, so the same medium imported twice (or
launched with ``--iso PATH`` again) is stored once, under one name. A file is taken for an ISO when
its first volume descriptor carries the standard identifier ``CD001`` at byte 32769
(ECMA-119 8.1: the descriptors start at sector 16 of 2048 bytes, the identifier
after the one-byte type); hybrid ISOs, which also start with a boot record and
partition table for USB sticks, have it too.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from bungalow.errors import ConflictError, NotFoundError, UserError
from bungalow.images import disk as disks
from bungalow.images._tools import require_space
from bungalow.images.store import Image, ImageStore
from bungalow.names import validate_name

#: The file an ``iso`` image keeps its medium in, beside its manifest.
MEDIUM = "medium.iso"
#: Where ECMA-119 puts the first volume descriptor's standard identifier.
VOLUME_ID_OFFSET = 16 * 2048 + 1
VOLUME_ID = b"CD001"
_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


def is_iso(path: Path) -> bool:
    """Whether ``path`` is an ISO 9660 image (the ``CD001`` identifier at byte 32769)."""
    try:
        with path.open("rb") as file:
            file.seek(VOLUME_ID_OFFSET)
            return file.read(len(VOLUME_ID)) == VOLUME_ID
    except OSError:
        return False


def check_iso(path: Path) -> Path:
    """The absolute path of ``path`` if it is an ISO 9660 file; else NotFoundError or
    UserError with a sentence (nothing is read beyond its volume descriptor)."""
    source = path.expanduser().absolute()
    if not source.exists():
        raise NotFoundError(f"There is no file {source}; check the path of the ISO.")
    if not source.is_file():
        raise UserError(f"{source} is not a regular file; give the path of an ISO image.")
    if not is_iso(source):
        raise UserError(
            f"{source} is not an ISO 9660 image (it has no CD001 volume descriptor at byte "
            f"{VOLUME_ID_OFFSET}); give an installer or live CD image (a disk is imported "
            "with `bungalow image import`)."
        )
    return source


def name_for(path: Path) -> str:
    """An image name made from an ISO's file name: ``debian-12.4.0-amd64-netinst.iso`` ->
    ``debian-12-4-0-amd64-netinst``."""
    stem = _NAME_CHARS.sub("-", path.stem.lower()).strip("-")[:48].strip("-")
    return stem if stem and stem[0].isalpha() else f"iso-{stem or 'medium'}"


def import_iso(store: ImageStore, path: Path, name: str | None = None) -> Image:
    """The ``iso`` image with the content of ``path``: without ``name``, the one stored
    already if any (``launch --iso`` reuses it), else a copy named :func:`name_for` the file
    (with the id's start added when another image has that name); with ``name``, the image
    of that name if it holds this medium already, else a copy named so.

    Raises NotFoundError or UserError (:func:`check_iso`) before anything is copied,
    ConflictError when an explicit ``name`` is taken by other content or the medium is
    stored under another name (ImageStore.check_same), CapacityError when the store's
    disk has no room.
    """
    source = check_iso(path)
    image_id = disks.sha256(source)
    stored = _stored(store, image_id)
    if stored is not None and name is None:
        return stored
    if name is not None:
        validate_name(name, what="image")
        store.check_same(image_id, name)  # the medium stored under another name: refused
    else:
        name = name_for(source)
        if store.has(name):
            name = f"{name}-{image_id[:8]}"
    with store.build_lock(name):
        if store.has(name):
            if store.get(name).id == image_id:
                return store.get(name)
            raise ConflictError(
                f"An image named {name!r} exists already; remove it or choose another name."
            )
        with store.staging() as staging:
            staged = staging / "image"
            staged.mkdir()
            if stored is None:
                require_space(staging, source.stat().st_size + (16 << 20))
                shutil.copyfile(source, staged / MEDIUM)
            else:  # the same medium under another name: the content is not copied again
                (staged / MEDIUM).hardlink_to(stored.disk)
            fields = {
                "kind": "iso",
                "os_release": "",
                "kernel_version": None,
                "source": f"imported from {source}",
                "virtual_size": source.stat().st_size,
            }
            return store.commit(staged, name, fields, file=MEDIUM)


def _stored(store: ImageStore, image_id: str) -> Image | None:
    try:
        return store.get(image_id)
    except NotFoundError:
        return None
