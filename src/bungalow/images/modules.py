"""Kernel modules: which ones a guest needs before its root disk exists, and in what order.

Debian's cloud kernel builds the virtio drivers as modules, so the initramfs has
to load them before it can see /dev/vda. The host may not have kmod
(``modinfo``, ``depmod``), and a module tree fresh out of a .deb has no
``modules.dep`` yet, so dependencies are read straight from each module's ELF
``.modinfo`` section, which is where modinfo itself reads them.
"""

from __future__ import annotations

import gzip
import lzma
import struct
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bungalow.errors import ImageError
from bungalow.images._tools import find_tool

#: What the initramfs loads (docs/architecture.md, "Guest boot"); dependencies are
#: added by :func:`load_order`. Both transports are there so that one initramfs
#: boots on ``microvm`` (virtio-mmio) and on ``q35`` (virtio-pci).
BOOT_MODULES: tuple[str, ...] = (
    "virtio",
    "virtio_ring",
    "virtio_mmio",
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "virtio_net",
    "virtio_rng",
)

#: Loaded too where the kernel builds them as modules (Debian's 686 kernel: its cloud
#: kernels build them in): the root file system's driver, and the crc32c its metadata
#: checksums need, which ext4 asks the crypto API for rather than naming as a dependency.
BOOT_MODULES_IF_MODULAR: tuple[str, ...] = ("crc32c_generic", "ext4")

#: The file in a boot-module directory that lists module names, one a line, in load order.
LOAD_ORDER_FILE = "load-order"

_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def module_name(path: Path) -> str:
    """The name the kernel knows a module file by: suffix off, dashes as underscores."""
    name = path.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


def index_modules(tree: Path) -> dict[str, Path]:
    """Every loadable module under a ``/lib/modules/<version>`` tree, by name."""
    index: dict[str, Path] = {}
    for path in sorted(tree.rglob("*.ko*")):
        if path.name.endswith(_SUFFIXES) and path.is_file():
            index.setdefault(module_name(path), path)
    return index


def builtin_modules(tree: Path) -> set[str]:
    """The modules compiled into this kernel, which therefore need no loading."""
    listing = tree / "modules.builtin"
    if not listing.exists():
        return set()
    return {module_name(Path(line)) for line in listing.read_text().split() if line}


def read_module(path: Path) -> bytes:
    """The ELF bytes of a module file, decompressed if the kernel package compressed it."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        # The standard library has no zstd before Python 3.14.
        result = subprocess.run(
            [find_tool("zstd"), "-dc", "-q"], input=data, capture_output=True, check=False
        )
        if result.returncode != 0:
            raise ImageError(f"The kernel module {path.name} could not be decompressed.")
        return result.stdout
    return data


def modinfo(elf: bytes) -> dict[str, list[str]]:
    """The ``key=value`` pairs of a module's ``.modinfo`` section (keys may repeat).

    Modules are 64-bit ELF for amd64 and arm64 kernels and 32-bit ELF for i386,
    little-endian on all three.
    """
    if elf[:4] != b"\x7fELF" or elf[4] not in (1, 2) or elf[5] != 1:
        raise ImageError("A kernel module is not a little-endian ELF file.")
    layout = _ELF64 if elf[4] == 2 else _ELF32
    (shoff,) = struct.unpack_from(layout.address, elf, layout.shoff)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, layout.shentsize)
    sections = [_section(elf, shoff + i * shentsize, layout) for i in range(shnum)]
    names_offset = sections[shstrndx][1]
    info: dict[str, list[str]] = {}
    for name_index, offset, size in sections:
        end = elf.index(b"\0", names_offset + name_index)
        if elf[names_offset + name_index : end] != b".modinfo":
            continue
        for entry in elf[offset : offset + size].split(b"\0"):
            key, sep, value = entry.decode("utf-8", "replace").partition("=")
            if sep:
                info.setdefault(key, []).append(value)
    return info


@dataclass(frozen=True)
class _ElfLayout:
    """Where the fields :func:`modinfo` reads sit in one ELF class (the ELF specification)."""

    address: str  # struct format of an address or offset
    shoff: int  # e_shoff in the file header
    shentsize: int  # e_shentsize, followed by e_shnum and e_shstrndx
    sh_offset: int  # sh_offset in a section header, followed by sh_size


_ELF64 = _ElfLayout("<Q", 0x28, 0x3A, 24)
_ELF32 = _ElfLayout("<I", 0x20, 0x2E, 16)


def _section(elf: bytes, header: int, layout: _ElfLayout) -> tuple[int, int, int]:
    """(name index, file offset, size) of the section header at ``header``."""
    (name_index,) = struct.unpack_from("<I", elf, header)
    pair = "<" + layout.address[1] * 2
    offset, size = struct.unpack_from(pair, elf, header + layout.sh_offset)
    return name_index, offset, size


def depends(elf: bytes) -> list[str]:
    """The modules that must be loaded before this one, as names."""
    names: list[str] = []
    for value in modinfo(elf).get("depends", []):
        names.extend(name.replace("-", "_") for name in value.split(",") if name)
    return names


def load_order(
    tree: Path,
    wanted: Iterable[str] = BOOT_MODULES,
    optional: Iterable[str] = BOOT_MODULES_IF_MODULAR,
) -> list[tuple[str, Path]]:
    """``wanted`` and everything they depend on, each after its dependencies, then the
    ``optional`` modules the tree has.

    Modules built into the kernel are left out; a wanted module that is neither
    built in nor present means the kernel cannot boot a bungalow guest.
    """
    index = index_modules(tree)
    builtin = builtin_modules(tree)
    order: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name in chain:
            raise ImageError(f"The kernel modules {' -> '.join(chain)} depend on each other.")
        path = index.get(name)
        if path is None:
            raise ImageError(
                f"The kernel in {tree} has no module {name!r}, which a bungalow guest needs."
            )
        for dependency in depends(read_module(path)):
            visit(dependency, (*chain, name))
        seen.add(name)
        order.append((name, path))

    for name in wanted:
        visit(name.replace("-", "_"), ())
    for name in optional:
        if name in index:
            visit(name, ())
    return order


def install_boot_modules(
    tree: Path, destination: Path, wanted: Iterable[str] = BOOT_MODULES
) -> list[str]:
    """Copy the boot modules, decompressed, into ``destination`` with their load order.

    The initramfs is then built from this small directory alone, and busybox's
    insmod never has to decompress anything inside the slow emulated guest.
    """
    destination.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for name, path in load_order(tree, wanted):
        (destination / f"{name}.ko").write_bytes(read_module(path))
        names.append(name)
    (destination / LOAD_ORDER_FILE).write_text("".join(f"{name}\n" for name in names))
    return names


def read_load_order(directory: Path) -> Iterator[tuple[str, Path]]:
    """The boot modules :func:`install_boot_modules` left in ``directory``, in order."""
    try:
        lines = (directory / LOAD_ORDER_FILE).read_text().split()
    except FileNotFoundError:
        raise ImageError(f"The image's boot modules in {directory} are missing.") from None
    for name in lines:
        yield name, directory / f"{name}.ko"
