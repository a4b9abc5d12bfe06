"""ISO media in the image store: recognised by their volume descriptor, kept by content."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.errors import ConflictError, NotFoundError, UserError
from bungalow.images import ImageStore
from bungalow.images.iso import import_iso, is_iso, name_for

#: From grub-rescue-pc (scripts/install): a real BIOS-bootable ISO 9660 image.
GRUB_RESCUE = Path("/usr/lib/grub-rescue/grub-rescue-cdrom.iso")


@pytest.fixture
def rescue() -> Path:
    assert GRUB_RESCUE.is_file(), "grub-rescue-pc is not installed; run ./scripts/install"
    return GRUB_RESCUE


def _store_entries(store: ImageStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir()) if store.root.exists() else []


def test_an_iso_has_its_volume_descriptor_and_other_files_do_not(
    rescue: Path, tmp_path: Path
) -> None:
    assert is_iso(rescue)
    text = tmp_path / "notes.iso"
    text.write_text("not a CD\n" * 10000)
    assert not is_iso(text)
    short = tmp_path / "short.iso"
    short.write_bytes(b"\0" * 1000)
    assert not is_iso(short)


def test_an_iso_is_imported_once_by_its_content(rescue: Path, store: ImageStore) -> None:
    first = import_iso(store, rescue)
    assert first.kind == "iso" and first.name == "grub-rescue-cdrom"
    assert first.disk.read_bytes() == rescue.read_bytes()
    assert first.virtual_size == rescue.stat().st_size
    again = import_iso(store, rescue)
    assert again.id == first.id and again.name == first.name
    named = import_iso(store, rescue, "grub-rescue-cdrom")  # its own name: idempotent
    assert named.id == first.id
    with pytest.raises(ConflictError, match=r"already the image 'grub-rescue-cdrom' "):
        import_iso(store, rescue, "rescue")  # another name for the same medium
    assert [image.name for image in store.list()] == ["grub-rescue-cdrom"]
    with pytest.raises(ConflictError, match="exists already"):
        import_iso(store, _copy_with_a_byte_changed(rescue, store.root.parent), "grub-rescue-cdrom")


def test_a_file_that_is_not_an_iso_is_refused_before_anything_is_copied(
    tmp_path: Path, store: ImageStore
) -> None:
    disk = tmp_path / "disk.iso"
    disk.write_bytes(b"\xeb\x63\x90" + b"\0" * (1 << 20))
    with pytest.raises(UserError, match=r"is not an ISO 9660 image .* CD001"):
        import_iso(store, disk)
    with pytest.raises(NotFoundError, match="no file"):
        import_iso(store, tmp_path / "missing.iso")
    assert _store_entries(store) == []


def test_an_iso_name_comes_from_its_file_name() -> None:
    assert name_for(Path("debian-12.4.0-amd64-netinst.iso")) == "debian-12-4-0-amd64-netinst"
    assert name_for(Path("/x/Win11_23H2.ISO")) == "win11-23h2"
    assert name_for(Path("2024.iso")) == "iso-2024"


def _copy_with_a_byte_changed(source: Path, directory: Path) -> Path:
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF
    copy = directory / "changed.iso"
    copy.write_bytes(bytes(data))
    return copy
