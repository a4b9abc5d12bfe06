"""Installer VMs planned and specified: a blank disk that must be sized, the ISO in a drive."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.daemon.state.records import Purpose, SnapshotRecord
from bungalow.daemon.vms.boot import machine_spec
from bungalow.daemon.vms.plan import plan_clone, plan_vm
from bungalow.daemon.vms.requests import CloneRequest, CreateRequest
from bungalow.errors import UserError
from bungalow.images import Image, ImageStore
from bungalow.images.iso import import_iso

GRUB_RESCUE = Path("/usr/lib/grub-rescue/grub-rescue-cdrom.iso")


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


@pytest.fixture
def iso(store: ImageStore) -> Image:
    assert GRUB_RESCUE.is_file(), "grub-rescue-pc is not installed; run ./scripts/install"
    return import_iso(store, GRUB_RESCUE)


def test_an_installer_vm_is_a_pc_vm_with_a_blank_disk_and_the_iso_inserted(iso: Image) -> None:
    vm = plan_vm(CreateRequest(name="legacy", iso=GRUB_RESCUE.name, disk=20 << 30), iso)
    assert vm.profile == "pc" and vm.disk_size == 20 << 30
    assert vm.media == iso.id and vm.image_id == iso.id
    assert vm.origin == "ISO grub-rescue-cdrom"


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({}, "give its size with --disk"),
        ({"profile": "micro"}, "use --profile pc"),
        ({"user_data": "#cloud-config\n"}, "no agent or cloud-init"),
        ({"image": "debian-12"}, "give --iso or --image, not both"),
    ],
)
def test_an_installer_vm_that_cannot_be_is_refused_with_a_sentence(
    iso: Image, changes: dict[str, object], said: str
) -> None:
    disk: dict[str, object] = {} if not changes else {"disk": 1 << 30}
    with pytest.raises(UserError, match=said):
        plan_vm(CreateRequest(name="legacy", iso="x", **{**disk, **changes}), iso)  # type: ignore[arg-type]


def test_its_machine_has_the_drive_with_or_without_a_medium(
    iso: Image, store: ImageStore, tmp_path: Path
) -> None:
    vm = plan_vm(CreateRequest(name="legacy", iso="x", disk=1 << 30), iso)
    inserted = machine_spec(tmp_path / "vm", vm, iso, store, "tcg")
    assert inserted.cdrom == iso.disk and inserted.cdrom_drive
    assert not inserted.agent and inserted.kernel is None
    assert inserted.reboot  # an installer reboots into what it installed
    empty = machine_spec(tmp_path / "vm", vm.with_changes(media=None), iso, store, "tcg")
    assert empty.cdrom is None and empty.cdrom_drive


def test_a_snapshot_keeps_the_medium_and_its_clone_gets_it(iso: Image) -> None:
    vm = plan_vm(CreateRequest(name="legacy", iso="x", disk=1 << 30), iso)
    snapshot = SnapshotRecord(
        id="s", name="s1", vm_id=vm.id, vm_name=vm.name, kind="full", purpose=Purpose.USER,
        image_id=iso.id, profile="pc", cpus=1, memory=512 << 20, disk_size=1 << 30,
        accel="tcg", qemu="7.2", digests={}, size=0, media=vm.media,
    )  # fmt: skip
    clone = plan_clone(snapshot, CloneRequest(name="copy", parent="legacy"), iso)
    assert clone.media == iso.id
    assert (
        plan_clone(
            snapshot.with_changes(media=None), CloneRequest(name="c", parent="legacy"), iso
        ).media
        is None
    )
