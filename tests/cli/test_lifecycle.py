"""The life of VMs through the CLI: stop/start, rm, daemon restarts, concurrency."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import BUNGALOW, Env
from tests.support import kill, wait_until

pytestmark = pytest.mark.vm


def _state(bw: Env, name: str) -> str:
    return str(json.loads(bw.run("inspect", name).stdout)["state"])


def test_stop_and_start_keep_the_disk(bw: Env) -> None:
    bw.run("launch", "keeper", "--owner", "alice", "--label", "purpose=ci", "-l", "team=a")
    record = json.loads(bw.run("inspect", "keeper").stdout)
    assert (record["owner"], record["labels"]) == ("alice", {"purpose": "ci", "team": "a"})
    assert (record["created_by"], record["origin"]) == ("admin", "image debian-12")
    bw.run("exec", "keeper", "--", "sh", "-c", "echo kept > /root/note && sync")
    assert bw.run("ls", "-q", "--label", "team=a", "--state", "running").stdout == "keeper\n"
    follow = subprocess.Popen(
        [*BUNGALOW, "logs", "-f", "keeper"], env=bw.env, stdout=subprocess.PIPE, text=True
    )
    bw.run("stop", "keeper")
    followed, _ = follow.communicate(timeout=60)  # logs -f ends once QEMU has
    assert follow.returncode == 0 and "bungalow-agent: powering off" in followed
    assert _state(bw, "keeper") == "stopped"
    assert bw.run("ls", "-q", "--state", "running").stdout == ""
    assert bw.qemu_pids() == []
    stopped = bw.run("exec", "keeper", "--", "true", check=False)
    assert stopped.returncode == 125  # bungalow's own refusal, apart from a command's status
    assert "bungalow start keeper" in stopped.stderr
    bw.run("start", "keeper")
    assert bw.run("exec", "keeper", "--", "cat", "/root/note").stdout == "kept\n"


def test_rm_leaves_nothing_behind(bw: Env) -> None:
    bw.run("launch", "gone")
    vm_dirs = list((bw.home / "vms").iterdir())
    assert len(vm_dirs) == 1
    bw.run("rm", "gone")
    assert bw.qemu_pids() == []
    assert list((bw.home / "vms").iterdir()) == []
    assert "gone" not in bw.run("ls").stdout


def test_run_rm_passes_the_exit_code_and_cleans_up(bw: Env) -> None:
    result = bw.run("run", "--rm", "debian-12", "--", "python3", "-c", "print(6*7)")
    assert result.stdout == "42\n"
    failing = bw.run("run", "--rm", "debian-12", "--", "sh", "-c", "exit 7", check=False)
    assert failing.returncode == 7
    assert bw.run("ls", "-q").stdout.strip() == ""
    assert bw.qemu_pids() == []


def test_vms_survive_the_daemon_being_killed(bw: Env) -> None:
    bw.run("launch", "sturdy")
    bw.run("exec", "sturdy", "--", "sh", "-c", "echo before > /root/mark")
    qemu_before = bw.qemu_pids()
    daemon = bw.daemon_pid()
    assert daemon is not None
    kill(daemon)
    assert bw.qemu_pids() == qemu_before
    # The next command starts a new daemon, which reattaches to the running VM; even one
    # started with another image store, where the VM's image is not: a running QEMU needs
    # nothing of it.
    bw.env["BUNGALOW_IMAGES"], images = str(bw.home / "other-images"), bw.env["BUNGALOW_IMAGES"]
    try:
        assert bw.run("exec", "sturdy", "--", "cat", "/root/mark").stdout == "before\n"
        assert _state(bw, "sturdy") == "running"
    finally:
        bw.env["BUNGALOW_IMAGES"] = images
    assert bw.daemon_pid() != daemon
    assert bw.qemu_pids() == qemu_before
    bw.run("stop", "sturdy")
    assert _state(bw, "sturdy") == "stopped"


def test_a_vm_that_vanished_while_the_daemon_was_down_is_failed(bw: Env) -> None:
    bw.run("launch", "doomed")
    daemon = bw.daemon_pid()
    assert daemon is not None
    kill(daemon)
    for pid in bw.qemu_pids():
        kill(pid)
    assert _state(bw, "doomed") == "failed"
    bw.run("start", "doomed")
    assert bw.run("exec", "doomed", "--", "echo", "back").stdout == "back\n"


def test_four_concurrent_launches(bw: Env) -> None:
    bw.run("ls")  # start the daemon once, not four times at once
    processes = [
        subprocess.Popen(
            [*BUNGALOW, "launch", f"many-{i}"],
            env=bw.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    for i in range(4):
        result = bw.run("exec", f"many-{i}", "--", "hostname")
        assert result.stdout == f"many-{i}\n"
    assert len(bw.qemu_pids()) == 4
    assert bw.zombies() == []


def test_a_guest_that_powers_off_is_stopped_and_one_that_resets_is_failed(bw: Env) -> None:
    bw.run("launch", "calm", "--memory", "256M")
    bw.run("launch", "crash", "--memory", "256M")
    # The micro image has no poweroff command: the kernel's sysrq powers off (o) or resets (b).
    bw.run("exec", "calm", "--", "sh", "-c", "echo o > /proc/sysrq-trigger &", check=False)
    bw.run("exec", "crash", "--", "sh", "-c", "echo b > /proc/sysrq-trigger &", check=False)
    wait_until("both ended", lambda: {_state(bw, "calm"), _state(bw, "crash")} <= {
        "stopped", "failed",
    }, 60)  # fmt: skip
    assert _state(bw, "calm") == "stopped"
    crashed = json.loads(bw.run("inspect", "crash").stdout)
    assert crashed["state"] == "failed" and "reset itself" in crashed["error"]
    assert bw.qemu_pids() == []
