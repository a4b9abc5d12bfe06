"""Snapshots, restores, clones and pause through the CLI, on real TCG guests.

One VM (``web``) is booted for the module; everything else is made from it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import Env
from tests.support import kill, wait_until

pytestmark = pytest.mark.vm


def _sh(bw: Env, vm: str, script: str) -> str:
    return bw.run("exec", vm, "--", "sh", "-c", script).stdout


def _info(bw: Env, vm: str) -> dict[str, object]:
    info: dict[str, object] = json.loads(bw.run("inspect", vm).stdout)
    return info


def _snapshot_dirs(bw: Env) -> list[Path]:
    return sorted((bw.home / "snapshots").iterdir())


@pytest.fixture(scope="module")
def web(bw_module: Env) -> Env:
    bw_module.run("launch", "web")
    _sh(
        bw_module,
        "web",
        "echo before > /root/note; setsid sleep 1000 </dev/null >/dev/null 2>&1 & "
        "echo $! > /root/sleeper",
    )
    bw_module.run("snapshot", "create", "web", "s1")
    return bw_module


def test_restore_brings_back_the_running_process_and_files(web: Env) -> None:
    listing = web.run("snapshot", "ls", "web").stdout
    assert "s1" in listing and "full" in listing
    _sh(web, "web", "echo after > /root/note; kill $(cat /root/sleeper)")
    assert "gone" in _sh(web, "web", "kill -0 $(cat /root/sleeper) 2>/dev/null || echo gone")
    result = web.run("snapshot", "restore", "web", "s1")
    assert "web is running from snapshot s1" in result.stdout
    assert _sh(web, "web", "cat /root/note") == "before\n"
    assert _sh(web, "web", "kill -0 $(cat /root/sleeper) && echo alive") == "alive\n"
    # The guest's wall clock was set to now, not left at the moment of the snapshot.
    guest_now = float(_sh(web, "web", "date +%s"))
    assert abs(guest_now - time.time()) < 5


def test_vm_listing_counts_snapshot_space(web: Env) -> None:
    info = _info(web, "web")
    assert isinstance(info["snapshots_used"], int) and info["snapshots_used"] > 1 << 20
    assert "snap" in web.run("ls").stdout


def test_a_clone_diverges_from_its_source_and_has_its_own_identity(web: Env) -> None:
    result = web.run("clone", "web", "twin", "--snapshot", "s1")
    assert "twin is running" in result.stdout
    assert _sh(web, "twin", "cat /root/note") == "before\n"
    _sh(web, "twin", "echo twin > /root/note")
    _sh(web, "web", "echo web > /root/note")
    assert _sh(web, "twin", "cat /root/note") == "twin\n"
    assert _sh(web, "web", "cat /root/note") == "web\n"
    probe = (
        "hostname; cat /etc/machine-id /sys/class/net/eth0/address; head -c16 /dev/urandom | od -x"
    )
    source, twin = _sh(web, "web", probe).splitlines(), _sh(web, "twin", probe).splitlines()
    assert twin[0] == "twin" and source[0] == "web"
    for line in range(1, 4):  # machine-id, MAC and the random stream all differ
        assert source[line] != twin[line]
    assert twin[2] == _info(web, "twin")["mac"]
    assert "deb.debian.org" in _sh(web, "twin", "getent hosts deb.debian.org")  # network works
    # The snapshot a clone stands on cannot be removed while it does.
    refused = web.run("snapshot", "rm", "web", "s1", check=False)
    assert refused.returncode == 1
    assert "twin" in refused.stderr and "remove those first" in refused.stderr
    web.run("rm", "twin")


def test_clone_without_a_snapshot_copies_the_vm_as_it_runs_now(web: Env) -> None:
    _sh(web, "web", "echo now > /root/now")
    before = _snapshot_dirs(web)
    web.run("clone", "web", "now-copy")
    assert _sh(web, "now-copy", "cat /root/now") == "now\n"
    assert len(_snapshot_dirs(web)) == len(before) + 1  # the fork's snapshot, kept for it
    assert "fork" not in web.run("snapshot", "ls", "web").stdout
    web.run("rm", "now-copy")
    assert _snapshot_dirs(web) == before  # nothing stands on it any more: freed


def test_pause_freezes_the_guest_and_resume_sets_its_clock(web: Env) -> None:
    # A guest clock a day behind stands for one that stood still through a long pause,
    # without the test waiting: resume must bring it back to the host's.
    _sh(web, "web", "date -s @$(( $(date +%s) - 86400 )) >/dev/null")
    assert float(_sh(web, "web", "date +%s")) < time.time() - 86000
    web.run("pause", "web")
    assert _info(web, "web")["state"] == "paused"
    refused = web.run("exec", "web", "--", "true", check=False)
    assert refused.returncode == 125 and "bungalow resume web" in refused.stderr
    web.run("resume", "web")
    guest_now = float(_sh(web, "web", "date +%s.%N"))
    assert abs(guest_now - time.time()) < 2


def test_a_damaged_snapshot_is_refused_and_the_vm_is_left_as_it_was(web: Env) -> None:
    web.run("snapshot", "create", "web", "fragile")
    _sh(web, "web", "echo untouched > /root/state")
    pid = _info(web, "web")["pid"]
    rows = sqlite3.connect(web.home / "bungalow.db").execute(
        "SELECT id FROM snapshots WHERE name = 'fragile'"
    )
    fragile = web.home / "snapshots" / rows.fetchone()[0]
    with open(fragile / "ram", "r+b") as ram:  # flip bytes where the guest's kernel lives
        ram.seek(16 << 20)
        data = ram.read(4096)
        ram.seek(16 << 20)
        ram.write(bytes(b ^ 0xFF for b in data))
    refused = web.run("snapshot", "restore", "web", "fragile", check=False)
    assert refused.returncode == 1
    assert "damaged" in refused.stderr and "ram" in refused.stderr
    assert _info(web, "web")["pid"] == pid
    assert _sh(web, "web", "cat /root/state") == "untouched\n"
    web.run("snapshot", "rm", "web", "fragile")
    assert not fragile.exists()


def test_a_snapshot_whose_dependencies_are_gone_is_refused(web: Env) -> None:
    web.run("snapshot", "create", "web", "orphan")
    db = sqlite3.connect(web.home / "bungalow.db")
    with db:
        db.execute("UPDATE snapshots SET image_id = 'f00d' || image_id WHERE name = 'orphan'")
    refused = web.run("snapshot", "restore", "web", "orphan", check=False)
    assert refused.returncode == 1 and "which is gone" in refused.stderr
    with db:
        db.execute(
            "UPDATE snapshots SET image_id = substr(image_id, 5), qemu = 'QEMU emulator "
            "version 1.0' WHERE name = 'orphan'"
        )
    refused = web.run("snapshot", "restore", "web", "orphan", check=False)
    assert refused.returncode == 1 and "QEMU emulator version 1.0" in refused.stderr
    assert _sh(web, "web", "echo still here") == "still here\n"
    web.run("snapshot", "rm", "web", "orphan")


def test_a_stopped_vm_gets_a_disk_snapshot(web: Env) -> None:
    web.run("launch", "cold")
    _sh(web, "cold", "echo one > /root/v && sync")
    web.run("stop", "cold")
    result = web.run("snapshot", "create", "cold", "d1")
    assert "disk only" in result.stdout
    web.run("start", "cold")
    _sh(web, "cold", "echo two > /root/v && sync")
    refused = web.run("snapshot", "restore", "cold", "d1", check=False)
    assert refused.returncode == 1 and "bungalow stop cold" in refused.stderr
    web.run("stop", "cold")
    web.run("snapshot", "restore", "cold", "d1")
    web.run("start", "cold")
    assert _sh(web, "cold", "cat /root/v") == "one\n"
    web.run("rm", "cold")


def test_removing_a_vm_keeps_the_snapshot_its_clones_stand_on(web: Env) -> None:
    web.run("clone", "web", "child", "--snapshot", "s1")
    _sh(web, "child", "echo child > /root/note")
    web.run("clone", "child", "grandchild")
    count = len(_snapshot_dirs(web))
    web.run("rm", "child")
    assert _sh(web, "grandchild", "cat /root/note") == "child\n"
    assert len(_snapshot_dirs(web)) == count  # the fork snapshot of child stays
    web.run("rm", "grandchild")
    assert len(_snapshot_dirs(web)) < count


def test_bad_snapshot_requests_get_one_sentence(web: Env) -> None:
    cases = [
        (("snapshot", "create", "web", "bad name"), "name"),
        (("snapshot", "create", "web", "s1"), "already has a snapshot named s1"),
        (("snapshot", "restore", "web", "nope"), "bungalow snapshot ls web"),
        (("snapshot", "ls", "ghost"), "no VM named ghost"),
        (("clone", "web", "web"), "already exists"),
        (("resume", "web"), "not paused"),
    ]
    for args, expected in cases:
        result = web.run(*args, check=False)
        assert result.returncode == 1, args
        assert expected in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert web.zombies() == []


def test_a_daemon_killed_during_a_snapshot_leaves_no_leftovers(web: Env) -> None:
    import subprocess

    from tests.conftest import BUNGALOW

    machines = set(web.qemu_pids())
    taking = subprocess.Popen([*BUNGALOW, "snapshot", "create", "web", "interrupted"], env=web.env)
    # Killed while the converter QEMU receives the VM's memory: once it is there.
    wait_until("the converter QEMU", lambda: set(web.qemu_pids()) - machines, interval=0.02)
    daemon = web.daemon_pid()
    assert daemon is not None
    kill(daemon)
    taking.wait(timeout=60)
    web.run("ls")  # a new daemon: reattaches, resumes web, sweeps the half-made snapshot
    assert _info(web, "web")["state"] == "running"
    assert _sh(web, "web", "echo alive") == "alive\n"
    rows = sqlite3.connect(web.home / "bungalow.db").execute("SELECT id FROM snapshots")
    known = {row[0] for row in rows}
    assert {d.name for d in _snapshot_dirs(web)} <= known
    running = [name for name in web.run("ls", "-q").stdout.split() if _info(web, name)["pid"]]
    assert len(web.qemu_pids()) == len(running)  # one QEMU per running VM, no converter left
