"""The daemon killed at seeded random moments while VMs are made, cloned, saved and removed.

Each round launches a VM with a network shaper, clones one, snapshots one
(through a converter QEMU), suspends or wakes one, and removes one, all at
once, and SIGKILLs the daemon at a random moment. After each kill the next
daemon must account for every process: every QEMU on the machine belongs to a
VM that ``ls`` shows running, and every VM shown running answers exec.
``BUNGALOW_CHAOS_SEED`` replays one seed; the seed is in every failure message.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BUNGALOW, Env
from tests.support import gone, wait_until

pytestmark = pytest.mark.vm

SEED = int(os.environ.get("BUNGALOW_CHAOS_SEED", "20261130"))
ROUNDS = 4
#: The longest a kill waits after the operations start: most of a boot under TCG.
LONGEST_WAIT = 4.0
SETTLED = ("running", "paused", "stopped", "failed", "suspended", "created")


def _start(bw: Env, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BUNGALOW, *args], env=bw.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _records(bw: Env) -> list[dict[str, object]]:
    names = bw.run("ls", "-q").stdout.split()
    return [json.loads(bw.run("inspect", name).stdout) for name in names]


def _settled(bw: Env, why: str) -> list[dict[str, object]]:
    """The VMs once none is half-way through an operation (recovery may still be at work)."""
    deadline = time.monotonic() + 120
    while True:
        records = _records(bw)
        busy = [r["name"] for r in records if r["state"] not in SETTLED or r.get("operation")]
        if not busy:
            return records
        assert time.monotonic() < deadline, f"{why}: {busy} never settled"
        time.sleep(0.5)


def _program(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.find("(") + 1 : stat.rfind(")")]


def _check(bw: Env, why: str) -> list[dict[str, object]]:
    records = _settled(bw, why)
    running = {int(str(r["pid"])): r["name"] for r in records if r["state"] == "running"}
    strays = [pid for pid in bw.qemu_pids() if pid not in running]
    assert not strays, f"{why}: QEMU {strays} belongs to no running VM ({records})"
    for name in running.values():
        result = bw.run("exec", str(name), "--", "true", check=False, timeout=120)
        assert result.returncode == 0, f"{why}: {name} is shown running but: {result.stderr}"
    zombies = {pid: _program(pid) for pid in bw.zombies()}
    assert not zombies, f"{why}: the daemon left zombies {zombies}"
    return records


def test_no_process_is_lost_whenever_the_daemon_dies(bw: Env) -> None:
    rng = random.Random(SEED)
    bw.run("launch", "src", "--memory", "256M")
    bw.run("launch", "old0", "--memory", "256M", "--net-bw", "8M")
    for round_ in range(1, ROUNDS + 1):
        why = f"seed {SEED}, round {round_}"
        states = {str(vm["name"]): vm["state"] for vm in _records(bw)}
        victims = sorted(set(states) - {"src", "old0"})
        work = [
            _start(bw, "launch", f"new{round_}", "--memory", "256M", "--net-bw", "8M"),
            _start(bw, "clone", "src", f"copy{round_}"),
            _start(bw, "snapshot", "create", "src", f"s{round_}"),
            # old0 is suspended and woken by turns (a failed wake is retried by start).
            _start(bw, "suspend" if states.get("old0") == "running" else "start", "old0"),
        ]
        if victims:
            work.append(_start(bw, "rm", rng.choice(victims)))
        time.sleep(rng.uniform(0.0, LONGEST_WAIT))
        pid = bw.daemon_pid()
        assert pid is not None, why
        os.kill(pid, signal.SIGKILL)
        for process in work:
            process.communicate(timeout=300)
        records = _check(bw, why)
        assert "src" in {r["name"] for r in records}, f"{why}: src is gone"
    # What the interrupted work left is removable, and then nothing runs.
    for record in _records(bw):
        bw.run("rm", str(record["name"]))
    assert bw.qemu_pids() == []
    assert list((bw.home / "vms").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="private networks need root")
def test_a_start_finished_after_a_kill_tells_the_guest_what_a_start_does(
    bw: Env, tmp_path: Path
) -> None:
    """A start cut short by a SIGKILL after its guest came up is finished by the next
    daemon, which tells the guest what the start had not yet: its second NIC's address
    and its SSH keys. The cut is made exact: the daemon dies with the VM running, and its
    row is put back to where a start stands between the guest answering and its end."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    suffix = os.getpid() % 10000
    one, two = f"rcva{suffix}", f"rcvb{suffix}"
    bw.run("network", "create", one, "--subnet", "10.209.1.0/24")
    bw.run("network", "create", two, "--subnet", "10.209.2.0/24")
    bw.run("launch", "two", "--network", one, "--network", f"{two}:10.209.2.20",
           "--ssh-key", str(key.with_suffix(".pub")))  # fmt: skip
    # What a start's last steps do, undone in the guest.
    bw.run("exec", "two", "--", "sh", "-c",
           "ip addr flush dev eth1 && rm /root/.ssh/authorized_keys")  # fmt: skip
    daemon = bw.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until("the daemon to die", lambda: gone(daemon))
    with sqlite3.connect(bw.home / "bungalow.db") as db:
        db.execute("UPDATE vms SET state = 'starting', operation = 'start' WHERE name = 'two'")

    assert json.loads(bw.run("inspect", "two").stdout)["state"] == "running"
    shown = bw.run("exec", "two", "--", "sh", "-c",
                   "ip -4 -o addr show eth1; cat /root/.ssh/authorized_keys").stdout  # fmt: skip
    assert "10.209.2.20/24" in shown
    assert key.with_suffix(".pub").read_text().split()[1] in shown
    assert "finished after the restart" in bw.run("events", "--vm", "two").stdout
    bw.run("rm", "--force", "two")
    bw.run("network", "rm", one, two)
