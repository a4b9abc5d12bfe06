"""Per-VM limits through the CLI, measured inside real guests, and changed live."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bungalow.host.cgroups import CpuMemLimits, VmCgroup
from tests.conftest import Env
from tests.support import wait_until

pytestmark = pytest.mark.vm

#: Writes 6 MiB with O_DIRECT (past the guest's page cache) and prints MB/s.
DISK_WRITE = (
    'python3 -c "import os,time\n'
    "fd=os.open('/root/bw',os.O_WRONLY|os.O_CREAT|os.O_DIRECT)\n"
    "import mmap; buf=mmap.mmap(-1,1<<20)\n"
    "t=time.time()\n"
    "for _ in range(6): os.write(fd,buf)\n"
    'os.fsync(fd); print(6/(time.time()-t))"'
)
#: Counts loop turns for 2 s of wall time: a CPU cap on QEMU shows as fewer turns.
SPIN = 'python3 -c "import time\nn=0\nend=time.time()+2\nwhile time.time()<end: n+=1\nprint(n)"'


def _sh(bw: Env, vm: str, script: str) -> str:
    return bw.run("exec", vm, "--", "sh", "-c", script).stdout


@pytest.fixture(scope="module")
def lim(bw_module: Env) -> Env:
    bw_module.run("launch", "lim", "--disk-bw", "1M", "--cpu-weight", "200")
    return bw_module


def test_limits_are_shown_and_kept_in_the_cgroup(lim: Env) -> None:
    info = json.loads(lim.run("inspect", "lim").stdout)
    assert info["limits"] == {"cpu_weight": 200, "disk_bw": 1 << 20}
    shares = f"/sys/fs/cgroup/cpu/bungalow/{info['id']}/cpu.shares"
    unified = f"/sys/fs/cgroup/bungalow/{info['id']}/cpu.weight"
    from pathlib import Path

    if Path(shares).exists():
        assert Path(shares).read_text().strip() == "2048"
        procs = Path(shares).parent / "cgroup.procs"
    else:
        assert Path(unified).read_text().strip() == "200"
        procs = Path(unified).parent / "cgroup.procs"
    assert str(info["pid"]) in procs.read_text().split()


def test_disk_bandwidth_is_limited_and_lifted_live(lim: Env) -> None:
    limited = float(_sh(lim, "lim", DISK_WRITE))
    assert limited < 1.6, f"{limited:.2f} MB/s under a 1M limit"
    lim.run("set", "lim", "--disk-bw", "0")
    free = float(_sh(lim, "lim", DISK_WRITE))
    assert free > limited * 2, (limited, free)
    lim.run("set", "lim", "--disk-bw", "1M")
    assert float(_sh(lim, "lim", DISK_WRITE)) < 1.6


def test_a_cpu_cap_set_live_slows_the_guest(lim: Env) -> None:
    free = int(_sh(lim, "lim", SPIN))
    lim.run("set", "lim", "--cpu-cap", "0.25")
    capped = int(_sh(lim, "lim", SPIN))
    lim.run("set", "lim", "--cpu-cap", "none")
    assert capped < free * 0.6, (free, capped)


def test_limits_survive_a_restart_of_the_vm(lim: Env) -> None:
    lim.run("stop", "lim")
    lim.run("start", "lim")
    assert float(_sh(lim, "lim", DISK_WRITE)) < 1.6


def test_bad_limits_get_one_sentence(lim: Env) -> None:
    for args, words in (
        (("set", "lim", "--cpu-weight", "0"), "from 1 to 10000"),
        (("set", "lim", "--disk-iops", "lots"), '--disk-iops "lots" is not valid'),
        (("set", "ghost", "--disk-iops", "5"), "no VM named ghost"),
        (("launch", "x", "--disk-iops-burst", "9"), "burst needs"),
        (("set", "lim", "--memory-limit", "100M"), "A memory limit of 100M is below the 512M"),
        (("launch", "x", "--memory", "512M", "--memory-limit", "300M"), "below the 512M of RAM"),
    ):
        result = lim.run(*args, check=False)
        assert result.returncode == 1 and words in result.stderr, (args, result.stderr)
    assert "x" not in lim.run("ls", "-q").stdout.split()
    assert "memory_limit" not in json.loads(lim.run("inspect", "lim").stdout)["limits"]


def test_a_qemu_the_oom_killer_ended_is_said_so(bw: Env) -> None:
    """The kernel ends a QEMU whose group outgrew its memory; the VM's error says so, not
    just that QEMU exited. The group's limit is written here directly (bungalow refuses
    one below the VM's RAM), so the sentence is the one for a host out of memory."""
    bw.run("launch", "oomy", "--memory", "512M")
    try:
        info = json.loads(bw.run("inspect", "oomy").stdout)
        group = VmCgroup(info["id"])
        rss = int(Path(f"/proc/{info['pid']}/statm").read_text().split()[1]) * os.sysconf(
            "SC_PAGE_SIZE"
        )
        group.apply(CpuMemLimits(memory_max=rss + (48 << 20)))
        bw.run("exec", "oomy", "--", "python3", "-c", "b = bytearray(300 << 20)", check=False)
        wait_until("the VM to fail", lambda: _state(bw, "oomy") == "failed", timeout=60)
        error = json.loads(bw.run("inspect", "oomy").stdout)["error"]
        assert error.startswith("the kernel's OOM killer ended its QEMU: the host ran out"), error
        assert "the kernel's OOM killer ended its QEMU" in bw.run("events", "--vm", "oomy").stdout
    finally:
        bw.run("rm", "-f", "oomy")


def _state(bw: Env, name: str) -> str:
    return str(json.loads(bw.run("inspect", name).stdout)["state"])
