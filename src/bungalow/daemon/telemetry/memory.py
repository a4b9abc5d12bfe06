"""What each running VM really costs the host in memory, and what is shared or given back.

Per VM (:class:`VmMemory`, bytes), measured when asked (``bungalow overhead``, ``host
info``, ``/metrics``, ``sprawl``) and kept :data:`FRESH` seconds:

- ``pss``, ``rss``: its QEMU's, from ``/proc/PID/smaps_rollup``;
- ``guest_ram``: the part of ``pss`` that is the guest's RAM (mappings QEMU marked
  mergeable, host/smaps.py), and ``overhead = pss - guest_ram``: QEMU's own;
- ``guest_used``: what the guest says it uses, ``MemTotal - MemAvailable`` of its
  ``/proc/meminfo`` read through the agent (None for a VM without an agent);
- ``ksm_merging``, ``ksm_profit``: its pages KSM merged (``ksm_merging_pages``) and
  the bytes that saves less KSM's own cost (``ksm_process_profit``), from
  ``/proc/PID/ksm_stat``;
- ``given_back``: what the guest freed and returned to the host through the balloon's
  free page reporting, from the ``given_back`` callable the daemon wires in, never more
  than the part of its RAM the host does not hold (:func:`not_held`).

The host's sums (:class:`HostMemory`) add KSM's totals from ``/sys/kernel/mm/ksm``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms import balloon
from bungalow.daemon.vms.manager import VmManager
from bungalow.daemon.vms.runtime import VmRuntime
from bungalow.errors import BungalowError
from bungalow.host import ksm, smaps

#: Seconds a measurement is reused: a scrape and a `host info` a moment apart read once.
FRESH = 3.0
#: Seconds the guest's agent gets to send /proc/meminfo.
AGENT_TIMEOUT = 2.0

#: What a VM's guest freed and the host took back (bytes), or None if nobody knows.
GivenBack = Callable[[VmRecord, VmRuntime], Awaitable[int | None]]


async def given_back_by_balloon(vm: VmRecord, runtime: VmRuntime) -> int | None:
    """What ``vm``'s balloon gives back now (vms/balloon.py): the memory it holds inflated
    plus what the guest reports free, which free page reporting has returned to the host;
    None for a VM without a balloon or a QEMU that did not answer."""
    got = await balloon.given_back(vm, runtime)
    return None if got is None else got.total


@dataclass(frozen=True)
class VmMemory:
    """One running VM's memory, in bytes (see the module's docstring for each figure)."""

    vm: str
    memory: int
    pss: int
    rss: int
    guest_ram: int
    overhead: int
    guest_used: int | None
    ksm_merging: int | None
    ksm_profit: int | None
    given_back: int | None


@dataclass(frozen=True)
class HostMemory:
    """The host's side, in bytes: ``allocated`` (the running VMs' memory), ``qemu_pss``
    and ``guest_ram`` (sums of :class:`VmMemory`), ``guest_used`` and ``given_back``
    (sums over the VMs that report them; None if none does), ``shared`` (what KSM saves
    host-wide: sharing places plus merged zero pages, times the page size),
    ``ksm_profit`` (``general_profit``: that less KSM's metadata), ``overhead_median``
    (the median VM's QEMU overhead)."""

    allocated: int
    qemu_pss: int
    guest_ram: int
    guest_used: int | None
    shared: int
    ksm_profit: int
    given_back: int | None
    overhead_median: int | None
    ksm_totals: ksm.KsmTotals


def _sum(values: list[int | None]) -> int | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def summarize(vms: list[VmMemory], totals: ksm.KsmTotals) -> HostMemory:
    """The host's sums over ``vms``."""
    return HostMemory(
        allocated=sum(vm.memory for vm in vms),
        qemu_pss=sum(vm.pss for vm in vms),
        guest_ram=sum(vm.guest_ram for vm in vms),
        guest_used=_sum([vm.guest_used for vm in vms]),
        shared=totals.saved_bytes,
        ksm_profit=totals.general_profit,
        given_back=_sum([vm.given_back for vm in vms]),
        overhead_median=int(statistics.median(vm.overhead for vm in vms)) if vms else None,
        ksm_totals=totals,
    )


def guest_used(meminfo: str) -> int | None:
    """``MemTotal - MemAvailable`` in bytes from a guest's ``/proc/meminfo``."""
    values = {}
    for line in meminfo.splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable") and rest.split():
            values[key] = int(rest.split()[0]) * 1024
    if len(values) < 2:
        return None
    return values["MemTotal"] - values["MemAvailable"]


class MemoryCensus:
    def __init__(self, vms: VmManager, given_back: GivenBack) -> None:
        self.vms = vms
        self.given_back = given_back
        self._measured: tuple[float, list[VmMemory]] | None = None
        self._lock = asyncio.Lock()

    async def measure(self) -> list[VmMemory]:
        """Every running VM's :class:`VmMemory`, by name (at most :data:`FRESH` s old)."""
        async with self._lock:
            if self._measured is not None and time.monotonic() - self._measured[0] < FRESH:
                return self._measured[1]
            running = [
                (vm, runtime)
                for vm in sorted(self.vms.list(), key=lambda vm: vm.name)
                if vm.state in (VmState.RUNNING, VmState.PAUSED)
                and (runtime := self.vms.runtime(vm.name)) is not None
            ]
            # All at once: each waits on its guest's agent (AGENT_TIMEOUT at most).
            measured = await asyncio.gather(
                *(self._one(vm, runtime) for vm, runtime in running), return_exceptions=True
            )
            found = [item for item in measured if isinstance(item, VmMemory)]
            for item in measured:
                if isinstance(item, BaseException) and not isinstance(item, OSError):
                    raise item  # a QEMU gone meanwhile is left out; anything else is a bug
            self._measured = (time.monotonic(), found)
            return found

    async def host(self, vms: list[VmMemory] | None = None) -> HostMemory:
        """The host's sums, over ``vms`` (every running VM's when not given)."""
        measured = await self.measure() if vms is None else vms
        return summarize(measured, await asyncio.to_thread(ksm.Ksm().totals))

    def held_by(self, vm: VmRecord) -> int | None:
        """Host memory ``vm``'s QEMU holds now (its PSS), None if it has none: what a VM
        nobody uses really costs (policies/sprawl.py). Blocking (reads /proc)."""
        runtime = self.vms.runtime(vm.name)
        if runtime is None:
            return None
        try:
            return smaps.parse_rollup(Path(f"/proc/{runtime.pid}/smaps_rollup").read_text())[1]
        except OSError:
            return None

    async def _one(self, vm: VmRecord, runtime: VmRuntime) -> VmMemory:
        qemu = await asyncio.to_thread(smaps.qemu_memory, runtime.pid)
        shared = await asyncio.to_thread(ksm.process_stat, runtime.pid)
        used = await _guest_meminfo(runtime) if vm.state is VmState.RUNNING else None
        return VmMemory(
            vm=vm.name,
            memory=vm.memory,
            pss=qemu.pss,
            rss=qemu.rss,
            guest_ram=qemu.ram_pss,
            overhead=qemu.overhead,
            guest_used=used,
            ksm_merging=None if shared is None else shared.merging_bytes,
            ksm_profit=None if shared is None else shared.profit,
            given_back=not_held(await self.given_back(vm, runtime), vm.memory, qemu.ram_rss),
        )


def not_held(given_back: int | None, memory: int, ram_rss: int) -> int | None:
    """``given_back`` (bytes) no larger than what the host does not hold of a guest's
    ``memory``: its RAM less the part resident (``ram_rss``). The guest's free figure
    counts pages it never touched and pages not reported yet, which the host never took
    or still holds; None stays None."""
    if given_back is None:
        return None
    return min(given_back, max(0, memory - ram_rss))


async def _guest_meminfo(runtime: VmRuntime) -> int | None:
    agent = runtime.agent
    if agent is None or agent.closed:
        return None
    data = b""

    async def read() -> None:
        nonlocal data
        async for chunk in agent.read_file("/proc/meminfo"):
            data += chunk

    try:
        await asyncio.wait_for(read(), AGENT_TIMEOUT)
    except (TimeoutError, BungalowError, OSError):
        return None
    return guest_used(data.decode(errors="replace"))
