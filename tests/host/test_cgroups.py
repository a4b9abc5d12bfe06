"""Control groups on this host (v1 here, v2 elsewhere): created, limited, removed."""

from __future__ import annotations

import subprocess
import time

import pytest

from bungalow.errors import UserError
from bungalow.host.cgroups import CpuMemLimits, VmCgroup, version

pytestmark = pytest.mark.skipif(version() is None, reason="this host has no cgroups")


#: Waits for a line, then takes 32 MiB and says so: memory charged inside the group.
ALLOCATE = (
    "import sys\nsys.stdin.readline()\nheld = bytearray(32 << 20)\nprint('held', flush=True)\n"
    "sys.stdin.readline()\n"
)


def test_a_group_takes_a_process_and_its_limits_then_goes() -> None:
    group = VmCgroup(f"test-{time.monotonic_ns()}")
    holder = subprocess.Popen(
        ["python3", "-c", ALLOCATE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        group.create()
        group.add(holder.pid)
        group.apply(CpuMemLimits(cpu_weight=200, cpu_cap=0.5, memory_max=256 << 20))
        for directory in group.directories():
            assert str(holder.pid) in (directory / "cgroup.procs").read_text().split()
        if group.version == 1:
            cpu, memory = group.directories()
            assert (cpu / "cpu.shares").read_text().strip() == "2048"
            assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
            assert int((memory / "memory.limit_in_bytes").read_text()) == 256 << 20
        else:
            (directory,) = group.directories()
            assert (directory / "cpu.max").read_text().split() == ["50000", "100000"]
        group.apply(CpuMemLimits())  # lifted again
        holder.stdin.write("allocate\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "held\n"
        assert group.usage()["memory"] >= 32 << 20  # what its process took since it joined
    finally:
        holder.kill()
        holder.wait()
        group.remove()
    assert not any(directory.exists() for directory in group.directories())
    group.remove()  # twice is fine


def test_a_process_over_the_groups_memory_limit_is_counted_as_oom_killed() -> None:
    group = VmCgroup(f"oom-{time.monotonic_ns()}")
    hog = subprocess.Popen(
        ["python3", "-c", "import sys\nsys.stdin.readline()\nb = bytearray(256 << 20)"],
        stdin=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert hog.stdin is not None
    try:
        group.create()
        group.add(hog.pid)
        group.apply(CpuMemLimits(memory_max=64 << 20))
        assert group.oom_kills() == 0
        hog.stdin.write("go\n")
        hog.stdin.flush()
        assert hog.wait(timeout=60) == -9  # SIGKILL, from the kernel
        assert group.oom_kills() == 1
    finally:
        hog.kill()
        hog.wait()
        group.remove()
    assert VmCgroup("no-such-group").oom_kills() == 0


def test_a_cpu_cap_slows_a_busy_process() -> None:
    # The CPU time a busy process gets in 1.5 s, which the cap bounds (0.2 CPU: about
    # 0.3 s, plus one 100 ms period): a busy host can only lower it, never raise it, so
    # the bound holds however loaded the machine is, where comparing with an uncapped run
    # did not (both starve alike on a loaded host).
    group = VmCgroup(f"spin-{time.monotonic_ns()}")
    counter = subprocess.Popen(
        ["python3", "-c", "import time\nend=time.time()+1.5\n"
         "while time.time()<end: pass\nprint(time.process_time())"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        group.create()
        group.add(counter.pid)
        group.apply(CpuMemLimits(cpu_cap=0.2))
        out, _ = counter.communicate(timeout=30)
    finally:
        group.remove()
    assert float(out) < 0.6, out


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        ({"cpu_weight": 0}, "outside 1-10000"),
        ({"cpu_cap": 0.0}, "more than 0"),
        ({"memory_max": 1 << 20}, "at least 64M"),
    ],
)
def test_bad_limits_are_one_sentence(limits: dict[str, float], words: str) -> None:
    with pytest.raises(UserError, match=words):
        CpuMemLimits(**limits)  # type: ignore[arg-type]


def test_empty_groups_are_swept_and_busy_ones_kept() -> None:
    from bungalow.host.cgroups import remove_empty_groups

    empty, busy = VmCgroup(f"empty-{time.monotonic_ns()}"), VmCgroup(f"busy-{time.monotonic_ns()}")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        empty.create()
        busy.create()
        busy.add(sleeper.pid)
        assert remove_empty_groups() >= 1
        assert not any(d.exists() for d in empty.directories())
        assert all(d.exists() for d in busy.directories())
    finally:
        sleeper.kill()
        sleeper.wait()
        busy.remove()
        empty.remove()
