"""Installer VMs booted for real: ISOs from Debian packages and one made here, a blank disk.

One installation (with an image store of its own: ISOs imported here never reach the
shared image cache) serves the module. The grub-rescue ISO (grub-rescue-pc) boots
under SeaBIOS, seen in the firmware's debug log; GRUB ignores the ACPI power button,
so its VM is also the one whose stop must be forced. The home-made installer
(tests/installer_media.py) writes a system onto the blank disk and powers off; with
the CD ejected the VM then boots that system from its disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IMAGE_CACHE, Env, _finish, _new_env
from tests.installer_media import INSTALLED, MARKER, installer_iso
from tests.support import wait_until

pytestmark = pytest.mark.vm

GRUB_RESCUE = "/usr/lib/grub-rescue/grub-rescue-cdrom.iso"
BOOTED_CD = "Booting from DVD/CD"
BOOTED_DISK = "Booting from Hard Disk"


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    env = _new_env(own_images=True)
    yield env
    _finish(env)


@pytest.fixture(scope="module")
def installer(kernel: Path) -> Path:
    return installer_iso(kernel, IMAGE_CACHE)


def _vm(env: Env, name: str) -> dict[str, Any]:
    return dict(json.loads(env.run("inspect", name).stdout))


def _events(env: Env, name: str) -> list[tuple[str, str]]:
    return [(e["kind"], e["message"]) for e in _vm(env, name)["events"]]


def _refused(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    result = env.run(*args, check=False)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result


def _firmware_says(env: Env, name: str, line: str) -> bool:
    return line in env.run("logs", name, "--firmware").stdout


def test_bad_input_is_refused_with_a_sentence_and_leaves_nothing(env: Env, tmp_path: Path) -> None:
    text = tmp_path / "notes.iso"
    text.write_text("this is not a CD\n" * 4000)
    said = _refused(env, "launch", "bad", "--iso", str(text), "--disk", "1G").stderr
    assert "is not an ISO 9660 image" in said
    said = _refused(env, "launch", "bad", "--iso", GRUB_RESCUE).stderr
    assert "--disk" in said
    asked = ("launch", "bad", "--iso", GRUB_RESCUE, "--image", "debian-12", "--disk", "1G")
    assert "give --iso or --image, not both" in _refused(env, *asked).stderr
    user_data = tmp_path / "user-data"
    user_data.write_text("#cloud-config\n")
    asked = ("launch", "bad", "--iso", GRUB_RESCUE, "--disk", "1G", "--cloud-init", str(user_data))
    assert "no agent or cloud-init" in _refused(env, *asked).stderr  # refused after the copy
    assert "bad" not in env.run("ls").stdout
    assert json.loads(env.run("image", "ls", "--json").stdout) == []  # nothing imported
    vms = env.home / "vms"
    assert not vms.exists() or not any(vms.iterdir())
    assert env.qemu_pids() == []


def test_the_grub_rescue_iso_boots_and_its_cd_changes_live_and_stopped(env: Env) -> None:
    env.run("launch", "rescue", "--iso", GRUB_RESCUE, "--disk", "64M")
    assert _vm(env, "rescue")["media"] == "grub-rescue-cdrom"
    # The blank disk has nothing to boot: SeaBIOS tries it, then boots the CD.
    wait_until("SeaBIOS booting the CD", lambda: _firmware_says(env, "rescue", BOOTED_CD))
    firmware = env.run("logs", "rescue", "--firmware").stdout
    assert firmware.index(BOOTED_DISK) < firmware.index(BOOTED_CD)

    said = _refused(env, "image", "rm", "grub-rescue-cdrom").stderr
    assert "CD-ROM drive of rescue" in said and "media eject" in said
    said = _refused(env, "exec", "rescue", "--", "true").stderr
    assert "no bungalow agent" in said and "bungalow console rescue" in said

    # A daemon killed outright: the next one adopts the QEMU and knows the medium.
    pid = env.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until("the daemon gone", lambda: not Path(f"/proc/{pid}").exists())
    vm = _vm(env, "rescue")
    assert vm["state"] == "running" and vm["media"] == "grub-rescue-cdrom"

    env.run("media", "eject", "rescue")  # live: QEMU confirms the drive is empty
    assert _vm(env, "rescue")["media"] is None
    env.run("media", "insert", "rescue", "grub-rescue-cdrom")
    assert _vm(env, "rescue")["media"] == "grub-rescue-cdrom"
    # A snapshot keeps the medium: its clone resumes with the CD its saved state had.
    env.run("snapshot", "create", "rescue", "s1")
    env.run("clone", "rescue", "copy", "--snapshot", "s1")
    assert _vm(env, "copy")["media"] == "grub-rescue-cdrom"
    env.run("media", "eject", "copy")  # live: QEMU had the CD in the clone's drive
    env.run("rm", "--force", "copy")

    # GRUB does not answer the ACPI power button: the stop is forced after the timeout.
    env.run("stop", "--timeout", "2s", "rescue")
    vm = _vm(env, "rescue")
    assert vm["state"] == "stopped" and vm["pid"] is None
    assert ("stopped", "forced off: the guest did not power off within 2 s") in _events(
        env, "rescue"
    )
    assert env.qemu_pids() == []

    env.run("media", "eject", "rescue")  # stopped: in the record, for the next start
    env.run("media", "insert", "rescue", GRUB_RESCUE)  # by path: the stored one, not a copy
    assert _vm(env, "rescue")["media"] == "grub-rescue-cdrom"
    assert len([ln for ln in env.run("image", "ls").stdout.splitlines() if " iso " in ln]) == 1
    env.run("start", "rescue")
    wait_until("the CD booted again", lambda: _firmware_says(env, "rescue", BOOTED_CD))
    env.run("media", "eject", "rescue")
    said = _refused(env, "image", "rm", "grub-rescue-cdrom").stderr
    assert "snapshot s1 of rescue" in said  # the ISO is the snapshot's too
    env.run("snapshot", "restore", "rescue", "s1")  # puts the snapshot's CD back
    assert _vm(env, "rescue")["media"] == "grub-rescue-cdrom"
    env.run("rm", "--force", "rescue")
    env.run("image", "rm", "grub-rescue-cdrom")


def test_an_iso_installs_onto_the_blank_disk_which_then_boots(env: Env, installer: Path) -> None:
    env.run("launch", "inst", "--iso", str(installer), "--disk", "128M")
    # The installer writes the disk and powers the VM off: stopped, like any stop.
    wait_until("the installer to power off", lambda: _vm(env, "inst")["state"] == "stopped", 120)
    assert ("stopped", "the guest powered off") in _events(env, "inst")
    assert INSTALLED in env.run("logs", "inst").stdout
    assert MARKER not in env.run("logs", "inst").stdout

    env.run("media", "eject", "inst")
    env.run("start", "inst")
    wait_until("the installed system's marker", lambda: MARKER in env.run("logs", "inst").stdout)
    wait_until("the system to power off", lambda: _vm(env, "inst")["state"] == "stopped", 120)
    firmware = env.run("logs", "inst", "--firmware").stdout  # this boot's only
    assert BOOTED_DISK in firmware and BOOTED_CD not in firmware
    env.run("rm", "inst")
    assert env.qemu_pids() == []
