"""Counters QEMU keeps for a running VM, read over QMP: disk requests and vCPU threads."""

from __future__ import annotations

from dataclasses import dataclass

from bungalow.qemu.monitor import Monitor
from bungalow.qemu.throttle import DISK


@dataclass(frozen=True)
class BlockStats:
    rd_bytes: int = 0
    wr_bytes: int = 0
    rd_reqs: int = 0
    wr_reqs: int = 0
    rd_time_ns: int = 0
    wr_time_ns: int = 0
    flush_reqs: int = 0
    flush_time_ns: int = 0


async def block_stats(monitor: Monitor, device: str = DISK) -> BlockStats:
    """Cumulative counters of the VM's disk since QEMU started."""
    result = await monitor.execute("query-blockstats")
    for entry in result if isinstance(result, list) else []:
        if entry.get("device") == device:
            stats = entry.get("stats", {})
            return BlockStats(
                rd_bytes=stats.get("rd_bytes", 0),
                wr_bytes=stats.get("wr_bytes", 0),
                rd_reqs=stats.get("rd_operations", 0),
                wr_reqs=stats.get("wr_operations", 0),
                rd_time_ns=stats.get("rd_total_time_ns", 0),
                wr_time_ns=stats.get("wr_total_time_ns", 0),
                flush_reqs=stats.get("flush_operations", 0),
                flush_time_ns=stats.get("flush_total_time_ns", 0),
            )
    return BlockStats()


async def vcpu_threads(monitor: Monitor) -> list[int]:
    """Host thread ids of the VM's vCPUs (TCG runs one thread per vCPU with thread=multi)."""
    result = await monitor.execute("query-cpus-fast")
    return (
        [int(cpu["thread-id"]) for cpu in result if "thread-id" in cpu]
        if isinstance(result, list)
        else []
    )
