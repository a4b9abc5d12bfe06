"""The host's disk seen from a guest: a full one holds the VM paused, saying why; space the
guest frees is given back to the host.

The disk-full test runs its daemon on a tmpfs of its own (the images stay in the
shared store elsewhere). Launching needs the VM's whole virtual disk free
(4G for debian-12), so the tmpfs is mounted large and shrunk once the VM runs
(a tmpfs's size is only a limit): then a few hundred MB are what the guest can
fill, and growing it again is freeing space.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IMAGE_CACHE, NO_KSM, Env
from tests.support import wait_until

pytestmark = pytest.mark.vm

#: Room the guest may fill once the VM runs (the daemon's 16M reserve comes out of it).
ROOM = 160 << 20
#: What the guest writes: more than ROOM and the space an earlier fill's removal gives back
#: (its discards may land after the room is measured); `yes` is quick under TCG and its
#: blocks are not zeros (detect-zeroes=unmap would turn zeros into discards, which fill
#: nothing). It is held once the host is full, so its length costs no time.
FILL = "yes bungalow | head -c 1200M > /root/fill; sync"


def _mount(home: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(home)],
                   check=True, capture_output=True)  # fmt: skip


def _resize(home: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(home)], check=True)


def _used(home: Path) -> int:
    stat = os.statvfs(home)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


@pytest.fixture
def tmpfs_bw(image_cache: Path) -> Iterator[Env]:
    """An installation whose data directory is a tmpfs of its own, unmounted afterwards."""
    home = Path(tempfile.mkdtemp(prefix="bgd-", dir="/tmp"))
    try:
        _mount(home, "6g")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        home.rmdir()
        pytest.skip(f"cannot mount a tmpfs here (root is needed): {exc}")
    env = Env(home, IMAGE_CACHE)
    try:
        yield env
    finally:
        tracebacks = env.daemon_tracebacks()
        env.shutdown()
        daemon = env.daemon_pid()
        if daemon:
            wait_until("the daemon to exit", lambda: not _alive(daemon))
        wait_until("the VMs' QEMUs to exit", lambda: not env.qemu_pids())
        subprocess.run(["umount", str(home)], check=False)
        with contextlib.suppress(OSError):
            home.rmdir()
        assert not tracebacks, f"bungalowd logged a traceback:\n{tracebacks[-3000:]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def _configure(bw: Env, reaper_interval: str) -> None:
    (bw.home / "config.toml").write_text(
        f'[sandboxes]\npool = 0\n\n[reaper]\ninterval = "{reaper_interval}"\n' + NO_KSM
    )


def _vm(bw: Env, name: str) -> dict[str, Any]:
    vm: dict[str, Any] = json.loads(bw.run("inspect", name).stdout)
    return vm


def _fill_until_held(bw: Env, name: str) -> None:
    """Shrink the disk to ROOM free, fill it from the guest: the command in flight is ended
    with the reason once QEMU holds the VM."""
    _resize(bw.home, _used(bw.home) + ROOM)
    filling = bw.run("exec", name, "--", "sh", "-c", FILL, check=False, timeout=240)
    assert filling.returncode != 0
    assert f"The VM {name} was paused before this finished, so it was ended" in filling.stderr
    assert "the host's disk is full" in filling.stderr
    assert "Traceback" not in filling.stderr


def _held_reason_is_shown(bw: Env, name: str) -> None:
    vm = _vm(bw, name)
    assert vm["state"] == "paused"
    assert f"no space left under {bw.home}" in vm["error"]
    assert f"`bungalow resume {name}`" in vm["error"]
    listed = bw.run("ls").stdout
    assert f"{name} is paused: the host's disk is full" in listed
    paused = [e for e in vm["events"] if e["kind"] == "paused"]
    assert paused and paused[-1]["reason"] == "host disk full"


def test_a_full_host_disk_holds_the_vm_paused_saying_why_until_there_is_room(
    tmpfs_bw: Env,
) -> None:
    bw = tmpfs_bw
    _configure(bw, "1h")  # the reaper's look at held VMs: not during this part
    bw.run("launch", "df1")
    _fill_until_held(bw, "df1")
    _held_reason_is_shown(bw, "df1")

    refused = bw.run("exec", "df1", "--", "true", check=False)
    assert refused.returncode != 0
    assert "Cannot run a command: the VM df1 is paused: the host's disk is full" in refused.stderr
    copy = bw.run("cp", str(bw.home / "config.toml"), "df1:/root/", check=False)
    assert copy.returncode != 0 and "the host's disk is full" in copy.stderr
    still_full = bw.run("resume", "df1", check=False)
    assert still_full.returncode != 0
    assert "The host's disk is still full" in still_full.stderr
    assert _vm(bw, "df1")["state"] == "paused"

    _resize(bw.home, 1 << 30)  # room again: the user's resume carries the guest on
    bw.run("resume", "df1")
    assert bw.run("exec", "df1", "--", "echo", "on").stdout == "on\n"
    assert _vm(bw, "df1")["error"] is None

    # Full again, and a daemon that starts meanwhile finds the VM held (QEMU's io-error
    # state) and resumes it by itself once there is room.
    bw.run("exec", "df1", "--", "sh", "-c", "rm -f /root/fill; sync")
    _fill_until_held(bw, "df1")
    daemon = bw.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGTERM)
    wait_until("the daemon to exit", lambda: not _alive(daemon))
    _configure(bw, "1s")
    _held_reason_is_shown(bw, "df1")  # the next CLI call starts the next daemon
    _resize(bw.home, 1 << 30)
    wait_until("the reaper to resume df1", lambda: _vm(bw, "df1")["state"] == "running")
    resumed = [e for e in _vm(bw, "df1")["events"] if e["kind"] == "resumed"]
    assert (resumed[-1]["actor"], resumed[-1]["reason"]) == (
        "policy disk-full", "the host's disk has room again",
    )  # fmt: skip
    assert bw.run("exec", "df1", "--", "echo", "on").stdout == "on\n"
    assert (bw.home / "reserve").stat().st_blocks * 512 >= 16 << 20  # taken back

    # Held, then stopped rather than resumed: the reason ends with the QEMU, and the reserve
    # is taken back before the VM boots again (not only by the reaper, here an hour away),
    # so the next hold is recorded too.
    daemon = bw.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGTERM)
    wait_until("the daemon to exit", lambda: not _alive(daemon))
    _configure(bw, "1h")
    bw.run("exec", "df1", "--", "sh", "-c", "rm -f /root/fill; sync")
    _fill_until_held(bw, "df1")
    _held_reason_is_shown(bw, "df1")
    bw.run("stop", "df1", "-t", "2s")  # its guest cannot answer: forced off after 2 s
    assert _vm(bw, "df1")["error"] is None
    _resize(bw.home, 1 << 30)
    bw.run("start", "df1")
    bw.run("exec", "df1", "--", "sh", "-c", "rm -f /root/fill; sync")
    _fill_until_held(bw, "df1")
    _held_reason_is_shown(bw, "df1")


def test_space_the_guest_frees_goes_back_to_the_host(bw: Env) -> None:
    bw.run("launch", "trim1")
    bw.run("exec", "trim1", "--", "sh", "-c", "yes bungalow | head -c 96M > /root/junk; sync")
    full = _vm(bw, "trim1")["disk_used"]
    assert full > 96 << 20
    # The root is mounted -o discard: the delete's discards reach QEMU (discard=unmap), which
    # punches the clusters out of the overlay, as the journal commits (sync: at once).
    bw.run("exec", "trim1", "--", "sh", "-c", "rm /root/junk; sync")
    wait_until("the overlay to shrink", lambda: _vm(bw, "trim1")["disk_used"] < full - (80 << 20))
