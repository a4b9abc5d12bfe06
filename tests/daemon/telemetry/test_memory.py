"""The arithmetic of a VM's memory figures and the host's sums."""

from __future__ import annotations

from bungalow.daemon.telemetry import memory
from bungalow.daemon.telemetry.memory import VmMemory, guest_used, summarize
from bungalow.host.ksm import PAGE_SIZE, KsmTotals

MIB = 1 << 20
MEMINFO = """\
MemTotal:         487232 kB
MemFree:          300000 kB
MemAvailable:     400000 kB
Buffers:            1000 kB
"""


def vm(name: str, overhead: int, **changes: int | None) -> VmMemory:
    figures: dict[str, int | None] = {
        "memory": 512 * MIB, "pss": 200 * MIB, "rss": 250 * MIB, "guest_ram": 150 * MIB,
        "overhead": overhead, "guest_used": 60 * MIB, "ksm_merging": 40 * MIB,
        "ksm_profit": 30 * MIB, "given_back": None, **changes,
    }  # fmt: skip
    return VmMemory(vm=name, **figures)  # type: ignore[arg-type]


def test_what_a_guest_uses_is_memtotal_less_memavailable() -> None:
    assert guest_used(MEMINFO) == (487232 - 400000) * 1024
    assert guest_used("MemTotal: 1 kB\n") is None


def test_the_host_sums_and_the_median_overhead() -> None:
    totals = KsmTotals(pages_shared=100, pages_sharing=900, ksm_zero_pages=24, general_profit=7)
    host = summarize(
        [vm("a", 40 * MIB), vm("b", 90 * MIB, guest_used=None), vm("c", 50 * MIB)], totals
    )
    assert host.allocated == 3 * 512 * MIB
    assert host.qemu_pss == 600 * MIB and host.guest_ram == 450 * MIB
    assert host.guest_used == 120 * MIB  # b's agent said nothing: not counted as 0
    assert host.overhead_median == 50 * MIB
    assert host.shared == 924 * PAGE_SIZE and host.ksm_profit == 7
    assert host.given_back is None  # nobody reports it (no balloon yet)


def test_no_vm_has_no_median() -> None:
    assert summarize([], KsmTotals()).overhead_median is None


def test_given_back_is_never_more_than_the_host_does_not_hold() -> None:
    # the trial's 384M guest: 122M of its RAM resident, its free figure 284M
    assert memory.not_held(284 * MIB, 384 * MIB, 122 * MIB) == 262 * MIB
    assert memory.not_held(40 * MIB, 384 * MIB, 122 * MIB) == 40 * MIB
    assert memory.not_held(10 * MIB, 256 * MIB, 300 * MIB) == 0  # RSS rounds past its RAM
    assert memory.not_held(None, 256 * MIB, 0) is None
