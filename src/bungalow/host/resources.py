"""How much CPU, memory and disk this host has, and whether a VM fits.

A VM that does not fit must be refused before QEMU starts: QEMU itself would
start, then the host would swap or the OOM killer would pick a victim, possibly
another user's VM. The numbers come straight from the kernel (scheduler
affinity, /proc/meminfo, statvfs), so they are true inside containers and
cgroup-limited shells as far as the kernel reports them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bungalow.errors import CapacityError
from bungalow.units import format_size

MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class HostCapacity:
    """A snapshot of the host's resources; ``disk_*`` are of the data directory's file system."""

    cpus: int
    memory_bytes: int
    memory_available: int
    disk_total: int
    disk_free: int


def read_capacity(data_dir: Path) -> HostCapacity:
    """The host's resources now; ``data_dir`` (or its nearest existing parent) sizes the disk."""
    fields = _meminfo()
    disk = os.statvfs(_existing(data_dir))
    return HostCapacity(
        cpus=len(os.sched_getaffinity(0)),
        memory_bytes=fields["MemTotal"],
        memory_available=fields.get("MemAvailable", fields.get("MemFree", 0)),
        disk_total=disk.f_blocks * disk.f_frsize,
        disk_free=disk.f_bavail * disk.f_frsize,
    )


def read_memory() -> tuple[int, int]:
    """The host's memory in bytes now: (MemTotal, MemAvailable) from /proc/meminfo."""
    fields = _meminfo()
    return fields["MemTotal"], fields.get("MemAvailable", fields.get("MemFree", 0))


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes (the kernel writes kB, meaning KiB)."""
    values: dict[str, int] = {}
    for line in MEMINFO.read_text().splitlines():
        name, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            values[name] = int(words[0]) * (1024 if words[1:] == ["kB"] else 1)
    return values


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_fits(cpus: int, memory: int, disk: int, capacity: HostCapacity) -> None:
    """Raise CapacityError naming the first resource the host lacks for this VM.

    vCPUs beyond the host's CPUs only queue behind each other (TCG runs one host
    thread per vCPU), memory is compared with what the host has available now,
    and disk with what the data directory's file system has free.
    """
    if cpus > capacity.cpus:
        raise CapacityError(
            f"The host has {capacity.cpus} CPU{'s' if capacity.cpus != 1 else ''}; asked for "
            f"{cpus}. Use --cpus {capacity.cpus} or fewer."
        )
    if memory > capacity.memory_available:
        have = format_size(capacity.memory_available)
        raise CapacityError(
            f"The host has {have} of memory available; asked for {format_size(memory)}. "
            f"Use --memory {have} or less, or stop other VMs."
        )
    if disk > capacity.disk_free:
        have = format_size(capacity.disk_free)
        raise CapacityError(
            f"The data directory's disk has {have} free; asked for {format_size(disk)}. "
            f"Use --disk {have} or less, or delete unused VMs, snapshots and images."
        )
