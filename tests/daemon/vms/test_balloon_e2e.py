"""The balloon in real VMs: freed memory goes back to the host, saved machines with and
without the device restore, and memory pressure balloons a VM to its floor and no further.

The daemon of this module is mostly "under pressure" (``pressure_below`` above any
host's memory), so every VM with a floor is ballooned down to it within seconds,
and VMs with none must never be: the tests of the other behaviours launch VMs
without a floor. The pressure test itself makes real pressure: a host process in a
control group of its own takes 4 GiB under a pressure line drawn 2 GiB below the
host's MemAvailable.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.host.cgroups import CpuMemLimits, VmCgroup
from bungalow.host.resources import read_memory
from tests.conftest import Env, _finish, _new_env
from tests.support import wait_until

pytestmark = pytest.mark.vm

MIB = 1 << 20
GIB = 1 << 30
#: Writes every page of 1 GiB and holds it until /tmp/free exists, in the background.
FILL = (
    "import os, time\n"
    "b = bytearray(b'\\x01') * (1 << 30)\n"
    "open('/tmp/held', 'w').close()\n"
    "while not os.path.exists('/tmp/free'): time.sleep(0.1)\n"
)
PRESSURE = '[memory]\npressure_below = "1000G"\nrelief_above = "2000G"\npressure_interval = "1s"\n'


def _configure(env: Env, extra: str = "", pressure: str = PRESSURE) -> None:
    """Write the daemon's config and stop the running daemon, if any, so that the next
    command starts one that reads it (VMs outlive it and are adopted)."""
    (env.home / "config.toml").write_text(f"[sandboxes]\npool = 0\n{pressure}{extra}")
    pid = env.daemon_pid()
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        wait_until("the daemon to stop", lambda: not Path(f"/proc/{pid}").exists())


@pytest.fixture(scope="module")
def env(image_cache: Path) -> Iterator[Env]:
    env = _new_env()
    _configure(env)
    yield env
    _finish(env)


def _vm(env: Env, name: str) -> dict[str, object]:
    return dict(json.loads(env.run("inspect", name).stdout))


def _rss(env: Env, name: str) -> int:
    """Bytes of the VM's QEMU resident in host memory now."""
    pid = (env.home / "vms" / str(_vm(env, name)["id"]) / "run" / "qemu.pid").read_text()
    for line in Path(f"/proc/{pid.strip()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("QEMU has no VmRSS")


def _guest_available(env: Env, name: str) -> int:
    """The guest's MemAvailable in bytes. Pages in its balloon are taken (with
    deflate-on-oom the kernel still counts them in MemTotal), so it falls as the
    balloon inflates."""
    meminfo = env.run("exec", name, "--", "cat", "/proc/meminfo").stdout
    return int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024


def _balloon_events(env: Env, name: str) -> list[str]:
    events = json.loads(env.run("events", "--vm", name, "--json").stdout)
    return [str(event["message"]) for event in events if event["kind"] == "balloon"]


def test_a_guest_that_fills_and_frees_1g_gives_it_back(env: Env) -> None:
    env.run("launch", "fill", "--memory", "1536M")
    try:
        base_rss = _rss(env, "fill")
        (env.home / "fill.py").write_text(FILL)
        env.run("cp", str(env.home / "fill.py"), "fill:/root/fill.py")
        env.run("exec", "fill", "--", "sh", "-c", "python3 /root/fill.py >/dev/null 2>&1 &")
        wait_until(
            "the guest to hold 1 GiB",
            lambda: env.run("exec", "fill", "--", "ls", "/tmp").stdout.split().count("held"),
            timeout=120,
            interval=1,
        )
        peak_available = read_memory()[1]
        assert _rss(env, "fill") - base_rss > 900 * MIB, "the guest never held its 1 GiB"
        env.run("exec", "fill", "--", "touch", "/tmp/free")
        # Free page reporting hands the freed pages back within seconds; what stays is
        # what the guest keeps (page tables, caches, free pages in blocks under 2 MiB).
        wait_until(
            "the QEMU's RSS to fall back within 20% of a GiB of where it started",
            lambda: _rss(env, "fill") - base_rss < 0.2 * GIB,
            timeout=120,
            interval=1,
        )
        # The host sees it too; other tests on a busy host move MemAvailable meanwhile,
        # so only most of what was freed must show.
        wait_until(
            "the host's MemAvailable to come back",
            lambda: read_memory()[1] - peak_available > 0.6 * GIB,
            timeout=60,
            interval=1,
        )
        assert _balloon_events(env, "fill") == []  # no floor: never ballooned
    finally:
        env.run("rm", "-f", "fill")


def test_snapshots_and_clones_restore_exactly_with_the_balloon(env: Env) -> None:
    env.run("launch", "orig", "--memory", "512M")
    try:
        env.run("exec", "orig", "--", "sh", "-c", "head -c 4M /dev/urandom >/root/data; sync")
        digest = env.run("exec", "orig", "--", "md5sum", "/root/data").stdout.split()[0]
        env.run("snapshot", "create", "orig", "s1")
        env.run("clone", "orig", "copy", "--snapshot", "s1")
        try:
            for name in ("orig", "copy"):
                out = env.run("exec", name, "--", "md5sum", "/root/data").stdout
                assert out.split()[0] == digest
                loaded = env.run("exec", name, "--", "ls", "/sys/module").stdout.split()
                assert "virtio_balloon" in loaded
        finally:
            env.run("rm", "-f", "copy")
        _free_in_a_clone_and_keep_the_snapshot_whole(env)
        env.run("exec", "orig", "--", "rm", "/root/data")
        env.run("snapshot", "restore", "orig", "s1")
        assert env.run("exec", "orig", "--", "md5sum", "/root/data").stdout.split()[0] == digest
    finally:
        env.run("rm", "-f", "orig")


def _seccomp_filters(env: Env, name: str) -> int:
    pid = (env.home / "vms" / str(_vm(env, name)["id"]) / "run" / "qemu.pid").read_text()
    status = Path(f"/proc/{pid.strip()}/status").read_text()
    return int(status.split("Seccomp_filters:")[1].split()[0])


def _free_in_a_clone_and_keep_the_snapshot_whole(env: Env) -> None:
    """A clone maps the snapshot's RAM privately; QEMU 7.2 would punch the pages its guest
    frees out of the snapshot's file (qemu/private_ram.py). The clone's QEMU carries one
    more seccomp filter than a cold VM's, its guest frees 256 MiB beside a cold VM doing
    the same (whose RSS falls once its reports went through), and the snapshot still
    passes its checksum: a second clone starts from it."""
    env.run("clone", "orig", "copy", "--snapshot", "s1")
    try:
        assert _seccomp_filters(env, "copy") == _seccomp_filters(env, "orig") + 1
        assert not _vm(env, "copy")["balloon"] and _vm(env, "orig")["balloon"]
        said = env.run("set", "copy", "--memory-min", "256M").stdout
        assert "or from a snapshot's memory), so the floor applies from its next cold" in said
        churn = "python3 -c \"b = bytearray(b'\\x01') * (256 << 20)\""
        cold_before = _rss(env, "orig")
        for name in ("copy", "orig"):
            env.run("exec", name, "--", "sh", "-c", churn)
        wait_until(
            "the cold VM's reports to hand its freed pages back",
            lambda: _rss(env, "orig") < cold_before + 128 * MIB,
            timeout=120,
            interval=1,
        )
        env.run("clone", "orig", "copy2", "--snapshot", "s1")  # checks the ram's checksum
        env.run("rm", "-f", "copy2")
    finally:
        env.run("rm", "-f", "copy")


def test_a_snapshot_of_a_vm_without_a_balloon_still_restores(env: Env) -> None:
    """A machine booted with ``balloon = false`` has no balloon in its saved stream, as
    one saved before balloons existed: a clone of it loads without the device."""
    _configure(env, "balloon = false\n")
    env.run("launch", "old", "--memory", "256M")
    try:
        assert not _vm(env, "old")["balloon"]
        env.run("exec", "old", "--", "sh", "-c", "echo kept >/root/mark; sync")
        env.run("snapshot", "create", "old", "before")
        _configure(env)  # balloons on again
        env.run("clone", "old", "old-copy", "--snapshot", "before")
        try:
            assert not _vm(env, "old-copy")["balloon"]
            assert env.run("exec", "old-copy", "--", "cat", "/root/mark").stdout == "kept\n"
            loaded = env.run("exec", "old-copy", "--", "ls", "/sys/module").stdout.split()
            assert "virtio_balloon" not in loaded
        finally:
            env.run("rm", "-f", "old-copy")
    finally:
        env.run("rm", "-f", "old")


def _pressure_lines(below: int, above: int) -> str:
    return (
        f'[memory]\npressure_below = "{below // MIB}M"\nrelief_above = "{above // MIB}M"\n'
        'pressure_interval = "1s"\n'
    )


@contextlib.contextmanager
def _memory_hog(size: int) -> Iterator[None]:
    """A host process holding ``size`` bytes it has written, in a control group of its own
    whose memory limit leaves it a GiB of room (so a hog gone wrong is its group's problem,
    not the host's); ended and its group removed on the way out."""
    group = VmCgroup(f"test-hog-{os.getpid()}")
    group.create()
    hog = None
    try:
        group.apply(CpuMemLimits(memory_max=size + GIB))
        hold = (
            "import sys, time\nsys.stdin.readline()\n"
            f"b = bytearray(b'\\x01') * {size}\nprint(flush=True)\ntime.sleep(3600)"
        )
        hog = subprocess.Popen(
            [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert hog.stdin is not None and hog.stdout is not None
        group.add(hog.pid)  # in its group before it takes a byte
        hog.stdin.write(b"go\n")
        hog.stdin.flush()
        assert hog.stdout.readline() == b"\n", "the hog died before holding its memory"
        yield
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
        group.remove()


def test_pressure_balloons_a_vm_to_its_floor_and_never_one_without(env: Env) -> None:
    """Real pressure: the pressure line is put 2 GiB under the host's MemAvailable, and a
    host process in a control group of its own takes 4 GiB."""
    _configure(env, pressure=_pressure_lines(1 * MIB, 2 * MIB))  # no pressure yet
    env.run("launch", "floored", "--memory", "1G", "--memory-min", "256M")
    env.run("launch", "free", "--memory", "512M")
    try:
        assert _vm(env, "floored")["memory_min"] == 256 * MIB
        assert _vm(env, "floored")["balloon"]
        available = read_memory()[1]
        _configure(env, pressure=_pressure_lines(available - 2 * GIB, available - GIB))
        free_available = _guest_available(env, "free")
        assert _balloon_events(env, "floored") == []  # no pressure before the hog
        with _memory_hog(4 * GIB):
            # What the guest has available falls as its balloon inflates, to the floor
            # less what its kernel and processes use, and no further.
            wait_until(
                "the floored VM's balloon to reach its floor",
                lambda: _guest_available(env, "floored") <= 256 * MIB,
                timeout=120,
                interval=1,
            )
            assert _guest_available(env, "floored") > 32 * MIB  # not below: some 90M here
            events = _balloon_events(env, "floored")
            assert events and all(event.endswith("it now has 256M") for event in events)
            assert "took" in events[0] and "of memory available, under" in events[0]
            assert _balloon_events(env, "free") == []
            assert _guest_available(env, "free") > free_available - 64 * MIB
        # The hog gone, the host has memory to spare again: the balloon gives it back.
        wait_until(
            "the floored VM to get its memory back once the hog is gone",
            lambda: any(e.startswith("gave") for e in _balloon_events(env, "floored")),
            timeout=120,
            interval=1,
        )
        _configure(env)  # under pressure for good again: the floor holds the VM down
        wait_until(
            "the floored VM's balloon to reach its floor again",
            lambda: _guest_available(env, "floored") <= 256 * MIB,
            timeout=120,
            interval=1,
        )
        refused = env.run("set", "floored", "--memory-min", "2G", check=False)
        assert refused.returncode != 0
        assert "above its memory (1G); give --memory-min 1G or less" in refused.stderr
        assert _vm(env, "floored")["memory_min"] == 256 * MIB
        assert _vm(env, "floored")["balloon"]
        # Lifting the floor gives the memory back at once, pressure or not.
        out = env.run("set", "floored", "--memory-min", "none").stdout
        assert "memory floor none" in out
        env.run("set", "floored", "--memory-min", "none")  # again: nothing changes
        lifted = env.run("events", "--vm", "floored").stdout.count("no memory floor")
        assert lifted == 1
        wait_until(
            "the floored VM to get its memory back",
            lambda: _guest_available(env, "floored") > 640 * MIB,
            timeout=120,
            interval=1,
        )
    finally:
        env.run("rm", "-f", "floored", "free")


def test_a_bad_floor_is_one_sentence_and_makes_nothing(env: Env) -> None:
    result = env.run("launch", "bad", "--memory", "512M", "--memory-min", "1G", check=False)
    assert result.returncode != 0
    assert "above its memory (512M); give --memory-min 512M or less" in result.stderr
    assert "Traceback" not in result.stderr
    assert "bad" not in env.run("ls").stdout
