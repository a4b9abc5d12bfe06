"""The /proc census of the processes bungalowd started, with real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.host import processes

SLEEPER = "import time; time.sleep(120)"


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        child.kill()
        child.wait()


def _start(children: list[subprocess.Popen[bytes]], option: str, pidfile: Path) -> int:
    child = subprocess.Popen([sys.executable, "-c", SLEEPER, option, str(pidfile)])
    children.append(child)
    return child.pid


def _wait_listed(root: Path, count: int) -> list[processes.HostProcess]:
    for _ in range(200):  # the child execs python: its cmdline appears within milliseconds
        found = processes.under(root)
        if len(found) == count:
            return found
        time.sleep(0.01)
    raise AssertionError(f"expected {count} processes under {root}, found {found}")


def test_processes_are_found_by_the_pidfile_they_name(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    vm = tmp_path / "vms" / "v1" / "run"
    other = tmp_path / "vms" / "v2" / "run"
    qemu_like = _start(started, "-pidfile", vm / "qemu.pid")
    shaper_like = _start(started, "--pidfile", vm / "netshaper.pid")
    _start(started, "--pidfile", other / "netshaper.pid")
    _start(started, "--pidfile", Path("/elsewhere/x.pid"))  # not under the data directory
    found = _wait_listed(vm, 2)
    assert [(p.pid, p.run_dir) for p in found] == [(qemu_like, vm), (shaper_like, vm)]
    assert not any(p.is_qemu for p in found)  # their argv[0] is python
    assert len(_wait_listed(tmp_path, 3)) == 3


def test_end_all_leaves_none_and_reaps_its_children(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    run = tmp_path / "run"
    pids = {_start(started, "--pidfile", run / f"{i}.pid") for i in range(3)}
    _wait_listed(run, 3)
    ended = processes.end_all(run, timeout=2)
    assert {p.pid for p in ended} == pids
    assert processes.under(run) == []
    for child in started:
        assert child.poll() is not None  # gone (waited for by end, or now by poll)


def test_a_process_that_names_another_pidfile_now_is_left_alone(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    pid = _start(started, "--pidfile", tmp_path / "b.pid")
    (found,) = _wait_listed(tmp_path, 1)
    stale = processes.HostProcess(pid, tmp_path / "a.pid", "python3")  # as if the PID was reused
    assert processes.end(stale, timeout=1) is True
    assert started[0].poll() is None  # still running: it was not the process we meant
    assert processes.end(found, timeout=1) is True
    assert started[0].wait(timeout=5) is not None


def test_swtpm_names_its_pidfile_as_pid_file(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    run = tmp_path / "vms" / "v1" / "run"
    pid = _start(started, "--pid", Path(f"file={run / 'swtpm.pid'}"))
    found = _wait_listed(tmp_path, 1)
    assert [(p.pid, p.pidfile) for p in found] == [(pid, run / "swtpm.pid")]
