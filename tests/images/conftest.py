"""Fixtures for the images layer: a shared built image, small disks, fake kernel modules.

The debian-12 image takes a minute to build, so it is built once per machine
into a shared store (``BUNGALOW_TEST_IMAGES`` or ``BUNGALOW_IMAGES``, default
/var/cache/bungalow-test/images) and reused by every later session; the
store's build lock makes concurrent sessions wait for one build.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bungalow.images import RECIPE_VERSION, Image, ImageStore, build_image

SHARED_IMAGES = Path(
    os.environ.get("BUNGALOW_TEST_IMAGES")
    or os.environ.get("BUNGALOW_IMAGES")
    or "/var/cache/bungalow-test/images"
)

MakeModule = Callable[..., bytes]


@pytest.fixture(scope="session")
def shared_store() -> ImageStore:
    return ImageStore(SHARED_IMAGES)


@pytest.fixture(scope="session")
def debian12_image(shared_store: ImageStore) -> Image:
    """The debian-12 image of the shared store, built on first use or by an older recipe."""
    image = build_image(shared_store, "debian-12")
    manifest = json.loads((image.directory / "manifest.json").read_text())
    if manifest.get("recipe_version") != RECIPE_VERSION:
        image = build_image(shared_store, "debian-12", force=True)
    return image


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    """An empty store of this test's own."""
    return ImageStore(tmp_path / "images")


@pytest.fixture
def make_disk(tmp_path: Path) -> Callable[..., Path]:
    """Make a small disk file with qemu-img (raw or qcow2) holding a few known bytes."""

    def make(name: str = "disk.qcow2", fmt: str = "qcow2", size: str = "16M") -> Path:
        path = tmp_path / name
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True)
        subprocess.run(
            ["qemu-io", "-f", fmt, "-c", "write -P 0x5a 0 64k", str(path)],
            check=True,
            capture_output=True,
        )
        return path

    return make


@pytest.fixture
def make_module() -> MakeModule:
    """The bytes of a minimal 64-bit ELF file whose .modinfo section says ``depends=...``."""
    return elf_module


def elf_module(*, depends: tuple[str, ...] = (), name: str = "mod", bits: int = 64) -> bytes:
    """A module as the kernel's build lays it out: 64-bit ELF (amd64, arm64) or 32-bit (i386)."""
    modinfo = b"".join(
        entry + b"\0"
        for entry in (
            b"license=GPL",
            b"depends=" + ",".join(depends).encode(),
            b"name=" + name.encode(),
        )
    )
    names = b"\0.modinfo\0.shstrtab\0"
    # (header size, e_shoff at, e_shentsize at, section header format, alignment)
    size, shoff_at, shentsize_at, sh_format, align = (
        (64, 0x28, 0x3A, "<IIQQQQIIQQ", 8) if bits == 64 else (52, 0x20, 0x2E, "<IIIIIIIIII", 4)
    )
    modinfo_offset = size
    names_offset = modinfo_offset + len(modinfo)
    table_offset = (names_offset + len(names) + align - 1) // align * align
    header = bytearray(size)
    header[:6] = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1])
    struct.pack_into("<Q" if bits == 64 else "<I", header, shoff_at, table_offset)
    struct.pack_into("<HHH", header, shentsize_at, struct.calcsize(sh_format), 3, 2)

    def section(name_index: int, kind: int, offset: int, size: int) -> bytes:
        return struct.pack(sh_format, name_index, kind, 0, 0, offset, size, 0, 0, 1, 0)

    body = bytes(header) + modinfo + names
    body += b"\0" * (table_offset - len(body))
    return (
        body
        + section(0, 0, 0, 0)
        + section(1, 1, modinfo_offset, len(modinfo))
        + section(10, 3, names_offset, len(names))
    )
