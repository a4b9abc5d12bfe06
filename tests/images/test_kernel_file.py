"""The kernel is stored decompressed when QEMU can boot it that way (PVH), else as shipped."""

from __future__ import annotations

import gzip
import lzma
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from bungalow.images.kernel import extract_vmlinux, has_pvh_entry


def _elf_with_notes(notes: list[tuple[bytes, int]]) -> bytes:
    """A 64-bit ELF file whose one PT_NOTE segment holds (name, type) notes."""
    body = b""
    for name, kind in notes:
        padded = name + b"\0" * (4 - len(name) % 4)
        body += struct.pack("<III", len(name) + 1, 4, kind) + padded + b"\0\0\0\0"
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<QHH", header, 0x20, 64, 0, 0)
    struct.pack_into("<HH", header, 0x36, 56, 1)
    program = struct.pack("<IIQQQQQQ", 4, 4, 120, 0, 0, len(body), len(body), 4)
    return bytes(header) + program + body + b"kernel text" * 100


def _bzimage(payload: bytes) -> bytes:
    """A minimal bzImage: the set-up header fields extract_vmlinux reads, then the payload."""
    setup = bytearray(512 * 5)
    setup[0x1F1] = 4
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", setup, 0x248, 16, len(payload))
    return bytes(setup) + b"\0" * 16 + payload


PVH = _elf_with_notes([(b"Xen", 6), (b"Xen", 18), (b"GNU", 3)])


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress])
def test_a_pvh_kernel_is_decompressed(tmp_path: Path, compress: Callable[[bytes], bytes]) -> None:
    payload = compress(PVH) + struct.pack("<I", len(PVH))
    bzimage = tmp_path / "vmlinuz"
    bzimage.write_bytes(_bzimage(payload))
    assert extract_vmlinux(bzimage, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == PVH


def test_a_kernel_without_pvh_entry_stays_compressed(tmp_path: Path) -> None:
    plain = _elf_with_notes([(b"Xen", 6), (b"GNU", 18)])
    assert not has_pvh_entry(plain)
    bzimage = tmp_path / "vmlinuz"
    bzimage.write_bytes(_bzimage(lzma.compress(plain) + struct.pack("<I", len(plain))))
    assert not extract_vmlinux(bzimage, tmp_path / "vmlinux")
    assert not (tmp_path / "vmlinux").exists()


def test_a_cut_or_foreign_payload_is_not_used(tmp_path: Path) -> None:
    wrong_size = lzma.compress(PVH) + struct.pack("<I", len(PVH) + 1)
    unknown = b"BZh91AY&SY" + b"\0" * 64
    for number, payload in enumerate((wrong_size, unknown)):
        bzimage = tmp_path / f"vmlinuz-{number}"
        bzimage.write_bytes(_bzimage(payload))
        assert not extract_vmlinux(bzimage, tmp_path / "vmlinux")
    not_a_bzimage = tmp_path / "elf"
    not_a_bzimage.write_bytes(PVH)
    assert not extract_vmlinux(not_a_bzimage, tmp_path / "vmlinux")
