"""The guest's own static busybox, for the initramfs of an image of another architecture.

The initramfs of an x86_64 image runs the host's busybox-static. An i386 or
arm64 guest needs one built for its CPU, so the builder installs Debian's
``busybox-static`` into the guest (recipes.FOREIGN_PACKAGES) and copies the
binary beside the kernel. Its applet list (``busybox --list-full``) is written
next to it at build time, while binfmt_misc can run an arm64 program here: the
daemon that later makes the initramfs may run where no handler is registered.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from bungalow.errors import ImageError
from bungalow.images._tools import run_tool

#: The files an image of another architecture keeps beside its kernel.
BUSYBOX = "busybox"
APPLETS = "busybox.applets"

_PT_INTERP = 3


def install_guest_busybox(rootfs: Path, image_dir: Path) -> Path:
    """Copy the guest's static busybox to ``image_dir`` with its applet list; its path.

    ImageError when the guest has none or it is linked dynamically.
    """
    source = next(
        (
            rootfs / where
            for where in ("usr/bin/busybox", "bin/busybox")
            if (rootfs / where).is_file() and not (rootfs / where).is_symlink()
        ),
        None,
    )
    if source is None:
        raise ImageError("The guest has no busybox; its recipe must install busybox-static.")
    if not is_static(source):
        raise ImageError(
            f"The guest's {source.name} is linked dynamically; install busybox-static in it."
        )
    target = image_dir / BUSYBOX
    shutil.copyfile(source, target)
    target.chmod(0o755)
    listed = run_tool(
        [target, "--list-full"], what="listing the guest busybox's applets", workdir=image_dir
    )
    (image_dir / APPLETS).write_text(listed.stdout)
    return target


def read_applets(busybox: Path) -> list[str] | None:
    """The applet list written beside ``busybox`` at build time; None when there is none."""
    try:
        text = (busybox.parent / APPLETS).read_text()
    except FileNotFoundError:
        return None
    return [line.strip() for line in text.splitlines() if line.strip()]


def is_static(path: Path) -> bool:
    """True when the ELF file (32- or 64-bit) has no program interpreter (PT_INTERP)."""
    with path.open("rb") as file:
        header = file.read(64)
        if header[:4] != b"\x7fELF" or header[4] not in (1, 2):
            return False
        if header[4] == 2:
            (phoff,) = struct.unpack_from("<Q", header, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        else:
            (phoff,) = struct.unpack_from("<I", header, 0x1C)
            phentsize, phnum = struct.unpack_from("<HH", header, 0x2A)
        file.seek(phoff)
        table = file.read(phentsize * phnum)
    return all(
        struct.unpack_from("<I", table, i * phentsize)[0] != _PT_INTERP for i in range(phnum)
    )
