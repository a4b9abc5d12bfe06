"""The daemon's image catalogue: who uses an image, and what a project may see of it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from tests.daemon.records import put, vm


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
