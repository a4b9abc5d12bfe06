"""What the kernel says a process costs: CPU time, resident memory, time its threads waited.

A vCPU thread's *run delay* (the second field of ``/proc/PID/task/TID/schedstat``)
is the time it was ready to run but had no CPU: for a VM that is CPU steal,
the first sign of a noisy neighbour.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def cpu_time_ns(pid: int) -> int:
    """User plus system CPU time of the whole process (all threads), in nanoseconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_NS  # utime, stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run_delay_ns(pid: int, tid: int) -> int:
    """Nanoseconds thread ``tid`` of ``pid`` has waited for a CPU while runnable."""
    try:
        return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
