"""Real guests for the qemu layer's tests: a Debian cloud kernel and a busybox initramfs.

The kernel is the suite's ``kernel`` fixture (tests/conftest.py). The
initramfs is written by hand in cpio "newc" format, so the tests need neither
root nor the cpio tool. Its /init prints :data:`MARKER` on the serial console,
then powers off at once, or (with ``test_action=wait`` on the kernel command
line, which the kernel hands to init as an environment variable) after a line
arrives on the console.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bungalow.qemu.argv import MIB, MachineSpec
from bungalow.qemu.process import pid_alive, read_pid, terminate

MARKER = "BUNGALOW-TEST-MARKER"
BUSYBOX = Path("/bin/busybox")

INIT_SCRIPT = f"""#!/bin/busybox sh
/bin/busybox echo {MARKER}
if [ "$test_action" = wait ]; then read -r line; fi
/bin/busybox poweroff -f
"""


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    encoded = name.encode() + b"\0"
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
    header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
    padded_name = header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4)
    return padded_name + data + b"\0" * (-len(data) % 4)


def write_initramfs(path: Path) -> Path:
    entries = [
        _cpio_entry("bin", 0o040755),
        _cpio_entry("dev", 0o040755),
        _cpio_entry("proc", 0o040755),
        _cpio_entry("dev/console", 0o020600, rdev=(5, 1)),
        _cpio_entry("bin/busybox", 0o100755, BUSYBOX.read_bytes()),
        _cpio_entry("init", 0o100755, INIT_SCRIPT.encode()),
        _cpio_entry("TRAILER!!!", 0),
    ]
    path.write_bytes(b"".join(entries))
    return path


@pytest.fixture(scope="session")
def initramfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BUSYBOX.exists():
        pytest.skip("/bin/busybox is missing; apt-get install busybox-static")
    return write_initramfs(tmp_path_factory.mktemp("initramfs") / "initrd.cpio")


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


SpecFactory = Callable[..., MachineSpec]


@pytest.fixture
def make_spec(tmp_path: Path, disk: Path, kernel: Path, initramfs: Path) -> Iterator[SpecFactory]:
    """Build specs for real guests; any QEMU still running at the end of the test is killed."""
    run_dirs: list[Path] = []

    def factory(**overrides: object) -> MachineSpec:
        run_dir = tmp_path / f"run{len(run_dirs)}"
        run_dirs.append(run_dir)
        values: dict[str, object] = {
            "name": "testvm",
            "cpus": 1,
            "memory": 256 * MIB,
            "profile": "micro",
            "disk": disk,
            "kernel": kernel,
            "initrd": initramfs,
            "accel": "tcg",
            "run_dir": run_dir,
        }
        values.update(overrides)
        return MachineSpec(**values)  # type: ignore[arg-type]

    yield factory
    for run_dir in run_dirs:
        pid = read_pid(run_dir)
        if pid is not None and pid_alive(pid, run_dir):
            terminate(pid, run_dir, timeout=2)
    if shutil.which("pgrep"):
        leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
        assert not leftover.stdout.strip(), "a QEMU process outlived its test"
