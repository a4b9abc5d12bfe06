"""The guest architectures bungalow runs, under the names each tool knows them by.

QEMU, the kernel (``uname -m``) and bungalow's own manifests and API say
``x86_64``, ``i386`` and ``aarch64``; Debian's tools (mmdebstrap, dpkg, the
kernel packages) say ``amd64``, ``i386`` and ``arm64``. This module is the one
place that maps one onto the other, with the facts about each that do not need
QEMU to tell: which emulator binary and Debian package run it, and which
binfmt_misc handler lets the host run its programs while an image is built.
"""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bungalow.errors import UserError

Arch = Literal["x86_64", "i386", "aarch64"]
ARCHES: tuple[Arch, ...] = ("x86_64", "i386", "aarch64")
DEFAULT_ARCH: Arch = "x86_64"

#: Where the kernel lists the registered binfmt_misc handlers (``update-binfmts --enable``).
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class ArchInfo:
    """One guest architecture: its Debian name, its emulator and its user-mode handler."""

    name: Arch
    debian: str  # dpkg's architecture name, for mmdebstrap --architectures
    qemu_binary: str  # the system emulator that runs a whole guest of it
    qemu_package: str  # the Debian package that ships that binary
    #: The binfmt_misc handler (qemu-user-static's name) that runs its programs on another
    #: host; None where an x86_64 host runs them natively.
    binfmt: str | None
    #: What ``uname -m`` says inside a guest of it (an i386 Debian kernel is built for i686).
    uname: str


ARCH_INFO: dict[Arch, ArchInfo] = {
    "x86_64": ArchInfo("x86_64", "amd64", "qemu-system-x86_64", "qemu-system-x86", None, "x86_64"),
    "i386": ArchInfo("i386", "i386", "qemu-system-x86_64", "qemu-system-x86", None, "i686"),
    "aarch64": ArchInfo(
        "aarch64", "arm64", "qemu-system-aarch64", "qemu-system-arm", "qemu-aarch64", "aarch64"
    ),
}


def check_arch(name: str) -> Arch:
    """``name`` as an Arch, or a UserError listing the ones bungalow knows."""
    for arch in ARCHES:
        if name == arch:
            return arch
    raise UserError(f"The architecture {name!r} is not one bungalow runs; use {', '.join(ARCHES)}.")


def host_arch() -> str:
    """This host's architecture as the kernel names it (``x86_64``, ``aarch64``...)."""
    return platform.machine()


def runs_natively(arch: Arch, host: str | None = None) -> bool:
    """True when the host CPU runs ``arch`` code itself: KVM could run such a guest.

    An x86_64 CPU runs i386 code too; every other pairing needs emulation (TCG).
    """
    host = host or host_arch()
    return arch == host or (arch == "i386" and host == "x86_64")


def emulator_missing(arch: Arch) -> str | None:
    """None when the QEMU that runs ``arch`` guests is on PATH, else the sentence to say.

    The sentence names the Debian package to install (``qemu-system-arm`` for aarch64).
    """
    info = ARCH_INFO[arch]
    if shutil.which(info.qemu_binary) is not None:  # as qemu/process.py finds it
        return None
    return (
        f"{arch} guests run under {info.qemu_binary}, which is not installed; install the "
        f"Debian package {info.qemu_package} (apt-get install {info.qemu_package})."
    )


def binfmt_registered(arch: Arch, directory: Path = BINFMT_DIR, host: str | None = None) -> bool:
    """Whether this host runs ``arch`` programs (native, or a binfmt_misc handler enabled).

    Read from /proc/sys/fs/binfmt_misc/<handler>, whose first line is ``enabled``
    once ``update-binfmts --enable`` (or scripts/install) registered it.
    """
    handler = ARCH_INFO[arch].binfmt
    if handler is None or runs_natively(arch, host):
        return True
    try:
        first = (directory / handler).read_text().split("\n", 1)[0]
    except OSError:
        return False
    return first.strip() == "enabled"
