"""A VM's promised share of the host, applied to its QEMU and changeable while it runs.

CPU weight and cap and the memory limit of the whole QEMU process go to the
VM's control group (host/cgroups.py); disk IOPS and bandwidth with bursts go to
QEMU's block throttling (qemu/throttle.py); network bandwidth goes to the VM's
network shaper (host/netshaper.py), which only a VM started with a network
limit has. The record keeps them as a small JSON object, so a restarted VM or
daemon applies them again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from bungalow.errors import UserError
from bungalow.host.cgroups import CpuMemLimits, VmCgroup
from bungalow.qemu.monitor import Monitor
from bungalow.qemu.throttle import DiskLimits, apply_disk_limits
from bungalow.units import format_size, parse_size

log = logging.getLogger(__name__)

#: Below this a network limit is a broken link rather than a slow one.
MIN_NET_BW = 16 << 10
#: Room suggested above a VM's RAM for its QEMU's own memory (bytes): the median overhead
#: `bungalow overhead` showed here was 48-150M, most of it TCG's translation cache.
QEMU_ROOM = 256 << 20


@dataclass(frozen=True)
class Limits:
    cpu_weight: int = 100
    cpu_cap: float | None = None
    memory_limit: int | None = None
    disk_iops: int | None = None
    disk_bw: int | None = None
    disk_iops_burst: int | None = None
    disk_bw_burst: int | None = None
    #: Bytes per second in each direction, guest to host and host to guest.
    net_bw: int | None = None

    def __post_init__(self) -> None:
        self.cpu_mem()  # each part checks its own values
        self.disk()
        if self.net_bw is not None and self.net_bw < MIN_NET_BW:
            raise UserError(
                f"A network bandwidth limit must be at least {format_size(MIN_NET_BW)} per "
                "second, e.g. --net-bw 50M; 0 or none lifts it."
            )

    def cpu_mem(self) -> CpuMemLimits:
        return CpuMemLimits(self.cpu_weight, self.cpu_cap, self.memory_limit)

    def disk(self) -> DiskLimits:
        return DiskLimits(self.disk_iops, self.disk_bw, self.disk_iops_burst, self.disk_bw_burst)

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Limits:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def changed(self, changes: dict[str, Any]) -> Limits:
        """These limits with ``changes`` (API values: sizes as text, 0 or "none" lifts one)."""
        parsed: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            try:
                parsed[key] = _parse(key, value)
            except ValueError:
                raise UserError(
                    f"The {key.replace('_', ' ')} {value!r} is not a number; write e.g. "
                    f"{_EXAMPLES.get(key, '100')}."
                ) from None
        return replace(self, **parsed)


_EXAMPLES = {"cpu_cap": "0.5", "cpu_weight": "200", "disk_iops": "2000", "net_bw": "50M"}


def _parse(key: str, value: Any) -> Any:
    """One API value as a limit; ValueError for something that is not a number."""
    if key == "cpu_weight":
        return int(value)
    if _lifted(value):
        return None
    if key == "cpu_cap":
        return float(value)
    if key in ("memory_limit", "disk_bw", "disk_bw_burst", "net_bw"):
        return parse_size(value, what=key.replace("_", " "))
    if key in ("disk_iops", "disk_iops_burst"):
        return int(value)
    raise UserError(f"There is no limit called {key}.")


def check_memory_limit(limits: Limits, memory: int, name: str) -> None:
    """UserError when ``limits`` hold a VM of ``memory`` bytes to less than its own RAM: the
    kernel would kill its QEMU (the whole process is in the group) once the guest used it."""
    limit = limits.memory_limit
    if limit is not None and limit < memory:
        raise UserError(
            f"A memory limit of {format_size(limit)} is below the {format_size(memory)} of RAM "
            f"{name} has, and the kernel would kill its QEMU once the guest used it; give "
            f"--memory-limit {format_size(memory + QEMU_ROOM)} or more (its RAM and room for "
            "QEMU itself), or none."
        )


def _lifted(value: object) -> bool:
    return value in (0, "0", "none", "")


async def apply(vm_id: str, pid: int, monitor: Monitor | None, limits: Limits) -> None:
    """Put the QEMU ``pid`` in the VM's control group with ``limits``, and throttle its disk."""
    group = VmCgroup(vm_id)
    if group.available:
        await asyncio.to_thread(_apply_group, group, pid, limits.cpu_mem())
    elif limits.cpu_mem() != CpuMemLimits():
        log.warning("no cgroups on this host: CPU and memory limits of %s are not enforced", vm_id)
    if monitor is not None:
        await apply_disk_limits(monitor, limits.disk())


def _apply_group(group: VmCgroup, pid: int, limits: CpuMemLimits) -> None:
    group.create()
    group.add(pid)
    group.apply(limits)


def oom_killed(vm_id: str, name: str, limits: Limits) -> str | None:
    """Why the VM's QEMU went, if the kernel's OOM killer ended it (its control group's
    count, read before :func:`release`); None otherwise. Blocks: call it in a thread."""
    if VmCgroup(vm_id).oom_kills() == 0:
        return None
    if limits.memory_limit is None:
        return (
            "the kernel's OOM killer ended its QEMU: the host ran out of memory; give the "
            "host room (bungalow overhead shows what each VM holds) and start it again"
        )
    return (
        f"the kernel's OOM killer ended its QEMU at its memory limit of "
        f"{format_size(limits.memory_limit)}, which its RAM and QEMU itself outgrew; raise it "
        f"with bungalow set {name} --memory-limit SIZE (or none) and start it again"
    )


def release(vm_id: str) -> None:
    """The VM's QEMU is gone: remove its control group."""
    VmCgroup(vm_id).remove()
