"""Images through the CLI: other Debian releases, import, the pc profile, removal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Env
from tests.support import unique_disk

pytestmark = pytest.mark.vm


@pytest.mark.parametrize(("image", "version"), [("debian-11", "11"), ("debian-13", "13")])
def test_other_debian_releases_build_and_run(bw: Env, image: str, version: str) -> None:
    result = bw.run("run", "--rm", image, "--", "cat", "/etc/os-release", timeout=900)
    assert f'VERSION_ID="{version}"' in result.stdout
    assert image in bw.run("image", "ls").stdout


def test_building_a_present_image_is_skipped(bw: Env) -> None:
    result = bw.run("image", "build", "debian-12", timeout=60)
    assert "debian-12" in result.stdout
    listing = bw.run("image", "ls").stdout
    assert "bookworm" in listing


def test_imported_disk_boots_with_the_pc_profile(bw: Env, tmp_path: Path) -> None:
    disk = tmp_path / "legacy.img"
    unique_disk(disk)
    bw.run("image", "import", str(disk), "--name", "legacy")
    again = bw.run("image", "import", str(disk), "--name", "legacy").stdout
    assert "legacy" in again and "already there" in again
    bw.run("launch", "old", "--image", "legacy", "--memory", "256M")
    info = json.loads(bw.run("inspect", "old").stdout)
    assert info["state"] == "running"
    assert info["profile"] == "pc"
    refused = bw.run("exec", "old", "--", "true", check=False)
    assert refused.returncode == 125  # bungalow's own refusal, apart from a command's status
    assert "agent" in refused.stderr
    in_use = bw.run("image", "rm", "legacy", check=False)
    assert in_use.returncode == 1
    assert "used by old" in in_use.stderr
    bw.run("rm", "old")
    bw.run("image", "rm", "legacy")
    assert "legacy" not in bw.run("image", "ls").stdout


def test_importing_something_that_is_not_a_disk_is_refused(bw: Env, tmp_path: Path) -> None:
    missing = bw.run("image", "import", str(tmp_path / "nope.qcow2"), check=False)
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert "nope.qcow2" in missing.stderr
