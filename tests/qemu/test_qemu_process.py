"""Real QEMU processes: launch, refusal, liveness, exit and termination."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bungalow.errors import QemuError
from bungalow.qemu.argv import MachineSpec, PortForward, RunFiles
from bungalow.qemu.monitor import Monitor
from bungalow.qemu.process import find_qemu, launch, pid_alive, read_pid, terminate, wait_exit

MARKER = "BUNGALOW-TEST-MARKER"
BOOT_TIMEOUT = 60.0
SpecFactory = Callable[..., MachineSpec]


def wait_for_marker(files: RunFiles, timeout: float = BOOT_TIMEOUT) -> float:
    """Seconds until the guest printed the marker on its console."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if files.console_log.exists() and MARKER in files.console_log.read_text(errors="replace"):
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"no marker after {timeout} s; console: {files.console_log.read_text()!r}")


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_find_qemu() -> None:
    assert Path(find_qemu()).name == "qemu-system-x86_64"


@pytest.mark.vm
def test_guest_boots_answers_qmp_and_exits(make_spec: SpecFactory) -> None:
    machine = make_spec(cmdline_extra="test_action=wait")
    files = RunFiles(machine.run_dir)

    async def scenario() -> list[str]:
        pid = launch(machine)
        assert pid_alive(pid, machine.run_dir)
        async with await Monitor.connect(files.qmp) as monitor:
            wait_for_marker(files)
            assert await monitor.status() == "running"
            with socket.socket(socket.AF_UNIX) as console:
                console.connect(str(files.console))
                console.sendall(b"poweroff\n")  # the guest's /init reads a line, then powers off
                await asyncio.wait_for(wait_exit(pid), BOOT_TIMEOUT)
            names = [event.name async for event in monitor.events()]
        assert not pid_alive(pid, machine.run_dir)
        return names

    assert "SHUTDOWN" in asyncio.run(scenario())
    left = sorted(path.name for path in machine.run_dir.iterdir())
    assert left == ["console.log", "qemu.err"]


@pytest.mark.vm
def test_pc_profile_boots_a_kernel(make_spec: SpecFactory) -> None:
    machine = make_spec(profile="pc")
    pid = launch(machine)
    wait_for_marker(RunFiles(machine.run_dir))
    asyncio.run(asyncio.wait_for(wait_exit(pid), BOOT_TIMEOUT))


@pytest.mark.vm
def test_used_port_is_refused_and_cleaned_up(make_spec: SpecFactory, listening_port: int) -> None:
    machine = make_spec(ports=(PortForward(listening_port, 80),))
    with pytest.raises(QemuError) as caught:
        launch(machine)
    assert caught.value.message.startswith(
        f"QEMU could not forward host port {listening_port}/tcp on 127.0.0.1 (Could not set up "
        "host forwarding rule"
    )
    assert caught.value.message.endswith("so choose another host port.")
    assert list(machine.run_dir.iterdir()) == []


@pytest.mark.vm
def test_missing_kernel_is_refused_and_cleaned_up(make_spec: SpecFactory, tmp_path: Path) -> None:
    machine = make_spec(kernel=tmp_path / "no-such-vmlinuz")
    with pytest.raises(QemuError, match="no-such-vmlinuz"):
        launch(machine)
    assert list(machine.run_dir.iterdir()) == []


@pytest.mark.vm
def test_earlier_console_log_survives_a_refusal(
    make_spec: SpecFactory, listening_port: int
) -> None:
    machine = make_spec(ports=(PortForward(listening_port, 80),))
    machine.run_dir.mkdir()
    RunFiles(machine.run_dir).console_log.write_text("earlier boot\n")
    with pytest.raises(QemuError):
        launch(machine)
    assert [p.name for p in machine.run_dir.iterdir()] == ["console.log"]


@pytest.mark.vm
def test_second_launch_of_a_running_vm_is_refused(make_spec: SpecFactory) -> None:
    machine = make_spec(cmdline_extra="test_action=wait")
    pid = launch(machine)
    with pytest.raises(QemuError, match=f"already running for VM testvm as process {pid}"):
        launch(machine)
    files = RunFiles(machine.run_dir)
    assert all(path.exists() for path in (files.qmp, files.agent, files.console))
    assert read_pid(machine.run_dir) == pid and pid_alive(pid, machine.run_dir)


@pytest.mark.vm
def test_terminate_stops_qemu_with_sigterm(make_spec: SpecFactory) -> None:
    machine = make_spec(cmdline_extra="test_action=wait")
    pid = launch(machine)
    assert terminate(pid, machine.run_dir, timeout=10) is False
    assert not pid_alive(pid, machine.run_dir)
    assert "terminating on signal 15" in RunFiles(machine.run_dir).stderr.read_text()


@pytest.mark.vm
def test_terminate_kills_a_qemu_that_does_not_stop(make_spec: SpecFactory) -> None:
    machine = make_spec(cmdline_extra="test_action=wait")
    pid = launch(machine)
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    started = time.monotonic()
    assert terminate(pid, machine.run_dir, timeout=0.5) is True
    assert time.monotonic() - started < 5
    assert not pid_alive(pid, machine.run_dir)


def test_pid_alive_refuses_other_processes(tmp_path: Path) -> None:
    assert not pid_alive(os.getpid(), tmp_path)
    assert not pid_alive(2**22 + 1, tmp_path)  # above the kernel's PID limit
    assert terminate(os.getpid(), tmp_path) is False  # and so we never signal them


def test_wait_exit_returns_for_a_gone_process() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert asyncio.run(asyncio.wait_for(wait_exit(child.pid), 5)) is None


def test_wait_exit_reaps_our_own_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert asyncio.run(asyncio.wait_for(wait_exit(child.pid), 10)) == 3


SUBREAPER_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from bungalow.qemu.argv import MachineSpec, MIB
from bungalow.qemu.process import become_subreaper, launch, wait_exit
kernel, initrd, disk, run_dir = map(Path, sys.argv[1:])
assert become_subreaper()
spec = MachineSpec(name="reaped", cpus=1, memory=256 * MIB, profile="micro", disk=disk,
                   kernel=kernel, initrd=initrd, accel="tcg", run_dir=run_dir)
pid = launch(spec)
print(json.dumps({"pid": pid, "exit": asyncio.run(wait_exit(pid))}))
"""


@pytest.mark.vm
def test_a_subreaper_gets_the_exit_status(
    kernel: Path, initramfs: Path, disk: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "reaped"
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            SUBREAPER_SCRIPT,
            str(kernel),
            str(initramfs),
            str(disk),
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=BOOT_TIMEOUT * 2,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["exit"] == 0  # the guest powered off; QEMU exited cleanly
    assert not Path(f"/proc/{result['pid']}").exists()  # reaped, not a zombie
