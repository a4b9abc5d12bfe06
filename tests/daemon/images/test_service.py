"""The daemon's image catalogue: who uses an image, what a project may see of it, what an
import becomes, and what a removal takes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from bungalow.errors import ConflictError
from tests.daemon.records import put, vm
from tests.images.test_iso import GRUB_RESCUE


def _imported(daemon: Daemon, tmp_path: Path) -> str:
    disk = tmp_path / "plain.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    return daemon.services.images.store.import_disk(disk, "plain").id


def test_a_project_sees_only_its_own_vms_among_an_images_users(
    daemon: Daemon, tmp_path: Path
) -> None:
    image_id = _imported(daemon, tmp_path)
    put(daemon.store, vm("mine", image_id=image_id, project="team-a"), VmState.RUNNING)
    put(daemon.store, vm("theirs", image_id=image_id, project="team-b"))
    put(daemon.store, vm("admins", image_id=image_id))
    put(daemon.store, vm("elsewhere", image_id="0" * 64, project="team-a"))
    image = daemon.services.images.get("plain")
    views = daemon.services.views
    assert views.image(image).used_by == ["mine", "theirs", "admins"]
    assert views.image(image, "team-a").used_by == ["mine"]
    assert views.image(image, "team-c").used_by == []


def test_removing_a_shared_name_keeps_the_other_names_image(daemon: Daemon, tmp_path: Path) -> None:
    """A store from before imports refused a second name may hold one content twice;
    removing either name, with a VM on the content, leaves the other whole."""
    image_id = _imported(daemon, tmp_path)
    images = daemon.services.images
    (images.store.root / "names" / "twin").symlink_to(f"../{image_id}")
    put(daemon.store, vm("user", image_id=image_id))
    asyncio.run(images.remove("plain"))
    assert images.get("twin").disk.exists()
    with pytest.raises(ConflictError, match="used by user"):
        asyncio.run(images.remove("twin"))


def test_a_raw_disk_named_iso_is_imported_as_a_disk_and_an_iso_named_raw_as_an_iso(
    daemon: Daemon, tmp_path: Path
) -> None:
    """The format comes from the content (CD001, then qemu-img), never the file's name."""
    images = daemon.services.images
    disk = tmp_path / "rawdisk.iso"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "8M"], check=True)
    imported = asyncio.run(images.import_disk(disk, "rawdisk"))
    assert imported.kind == "disk"
    medium = tmp_path / "medium.raw"
    shutil.copyfile(GRUB_RESCUE, medium)
    assert asyncio.run(images.import_disk(medium, "medium")).kind == "iso"
