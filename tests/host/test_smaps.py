"""A QEMU's memory split into guest RAM and QEMU's own, on a real (paused) QEMU."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from bungalow.host import smaps

MIB = 1 << 20
SMAPS = """\
55d0a0000000-55d0a0100000 r-xp 00000000 fd:01 123 /usr/bin/qemu-system-x86_64
Size:               1024 kB
Rss:                 800 kB
Pss:                 400 kB
VmFlags: rd ex mr mw me
7f0000000000-7f0010000000 rw-p 00000000 00:00 0
Size:             262144 kB
Rss:              100000 kB
Pss:               60000 kB
VmFlags: rd wr mr mw me dc ac hg mg
7f0020000000-7f0020200000 rw-p 00000000 00:00 0
Size:               2048 kB
Rss:                   8 kB
Pss:                   8 kB
VmFlags: rd wr mr mw me ac mg
"""


def test_guest_ram_is_the_mappings_marked_mergeable() -> None:
    assert smaps.parse_ram(SMAPS) == ((262144 + 2048) * 1024, 100008 * 1024, 60008 * 1024)
    assert smaps.parse_rollup("Rss:  100808 kB\nPss:   60408 kB\n") == (
        100808 * 1024, 60408 * 1024,
    )  # fmt: skip
    memory = smaps.QemuMemory(rss=0, pss=60408 * 1024, ram_rss=0, ram_pss=60008 * 1024, ram_size=0)
    assert memory.overhead == 400 * 1024


@pytest.fixture
def qemu() -> Iterator[int]:
    """A QEMU with 64M of RAM, paused before its first instruction (-S): no guest runs."""
    process = subprocess.Popen(
        ["qemu-system-x86_64", "-M", "microvm", "-m", "64M", "-nodefaults", "-display", "none",
         "-accel", "tcg", "-S"],
    )  # fmt: skip
    yield process.pid
    process.kill()
    process.wait()


def test_a_real_qemus_guest_ram_is_found_by_its_mergeable_mappings(qemu: int) -> None:
    deadline = time.monotonic() + 30
    while True:  # QEMU maps its RAM while it starts
        memory = smaps.qemu_memory(qemu)
        if memory.ram_size >= 64 * MIB or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    # The guest's 64M, plus the ROM blocks (microvm's qboot, ACPI tables): all RAM blocks.
    assert 64 * MIB <= memory.ram_size < 80 * MIB
    assert memory.ram_pss <= memory.pss and memory.ram_rss <= memory.rss
    assert memory.overhead == memory.pss - memory.ram_pss > 4 * MIB  # QEMU's code and heap
