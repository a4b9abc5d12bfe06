"""The hole-punch guard of QEMUs that map a snapshot's RAM privately, on real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bungalow.qemu import private_ram

# Calls fallocate on the first 4 KiB of the file argv[1] with each mode of argv[2:];
# prints each call's errno (0 for success).
_TRY = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
fd = os.open(sys.argv[1], os.O_RDWR)
for mode in sys.argv[2:]:
    result = libc.fallocate(fd, int(mode), 0, 4096)
    print(0 if result == 0 else ctypes.get_errno())
"""


PUNCH_HOLE = str(0x02 | 0x01)  # with KEEP_SIZE, as QEMU asks
ZERO_RANGE = str(0x10)
PLAIN = "0"


def _try(path: Path, guarded: bool, *modes: str) -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", _TRY, str(path), *modes],
        preexec_fn=private_ram.guard() if guarded else None,
        capture_output=True,
        text=True,
        check=True,
    )
    return [int(line) for line in done.stdout.split()]


def test_the_guard_refuses_only_hole_punches(tmp_path: Path) -> None:
    ram = tmp_path / "ram"
    ram.write_bytes(b"\x5a" * 8192)
    assert _try(ram, True, PUNCH_HOLE) == [95]  # EOPNOTSUPP
    assert ram.read_bytes() == b"\x5a" * 8192  # the file kept its bytes
    assert _try(ram, True, PLAIN, ZERO_RANGE) == [0, 0]  # other modes are allowed
    assert ram.read_bytes()[:4096] == bytes(4096)
    assert _try(ram, False, PUNCH_HOLE) == [0]  # without the guard the punch goes through


def test_the_guard_is_inherited_by_children(tmp_path: Path) -> None:
    ram = tmp_path / "ram"
    ram.write_bytes(b"\x5a" * 4096)
    nested = (
        "import subprocess, sys; "
        f"subprocess.run([sys.executable, '-c', {_TRY!r}, {str(ram)!r}, {PUNCH_HOLE!r}])"
    )
    done = subprocess.run(
        [sys.executable, "-c", nested],
        preexec_fn=private_ram.guard(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["95"]
    assert ram.read_bytes() == b"\x5a" * 4096


def test_a_private_file_backend_is_found_on_the_command_line() -> None:
    words = ["-object", "memory-backend-file,id=pc.ram,size=1G,mem-path=/x/ram,share=off"]
    shared = ["-object", "memory-backend-file,id=pc.ram,size=1G,mem-path=/x/ram,share=on"]
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    with (
        subprocess.Popen([*sleep, *words]) as private,
        subprocess.Popen([*sleep, *shared]) as mapped_shared,
        subprocess.Popen(sleep) as anonymous,
    ):
        try:
            assert private_ram.maps_file_privately(private.pid)
            assert not private_ram.maps_file_privately(mapped_shared.pid)
            assert not private_ram.maps_file_privately(anonymous.pid)
        finally:
            for process in (private, mapped_shared, anonymous):
                process.kill()
    assert not private_ram.maps_file_privately(private.pid)  # gone
