"""One control group per VM: CPU weight and cap, and a memory limit for the whole QEMU.

Both kinds of host are served: cgroup v2 (one unified tree, ``cpu.weight``,
``cpu.max``, ``memory.max``) and cgroup v1 (a tree per controller,
``cpu.shares``, ``cpu.cfs_quota_us``, ``memory.limit_in_bytes``), as on the
machines bungalow is developed on. Groups live under ``bungalow/<name>`` in
each tree; values are written on creation and again whenever a limit
changes, which takes effect at once for a running QEMU.

Only this module knows cgroup file names; callers deal in :class:`CpuMemLimits`.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from bungalow.errors import UserError

ROOT = Path("/sys/fs/cgroup")
PARENT = "bungalow"
#: cgroup v2's default weight, and what v1's 1024 shares correspond to.
DEFAULT_WEIGHT = 100
CFS_PERIOD_US = 100_000
V1_CONTROLLERS = ("cpu", "memory")


@dataclass(frozen=True)
class CpuMemLimits:
    """``cpu_weight`` is relative (100 is the default, 200 twice the share under
    contention); ``cpu_cap`` is in CPUs (0.5 = half of one); ``memory_max`` in bytes."""

    cpu_weight: int = DEFAULT_WEIGHT
    cpu_cap: float | None = None
    memory_max: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.cpu_weight <= 10_000:
            raise UserError(f"The CPU weight {self.cpu_weight} is outside 1-10000; 100 is normal.")
        if self.cpu_cap is not None and self.cpu_cap <= 0:
            raise UserError(f"The CPU cap {self.cpu_cap:g} must be more than 0, e.g. 0.5.")
        if self.memory_max is not None and self.memory_max < 64 << 20:
            raise UserError("A memory limit for the whole QEMU process must be at least 64M.")


def version(root: Path = ROOT) -> int | None:
    """2 for a unified hierarchy, 1 for per-controller trees, None without cgroups."""
    if (root / "cgroup.controllers").exists():
        return 2
    if all((root / controller / "cgroup.procs").exists() for controller in V1_CONTROLLERS):
        return 1
    return None


class VmCgroup:
    """The control group(s) of one VM; safe to create again and to remove twice."""

    def __init__(self, name: str, root: Path = ROOT) -> None:
        self.name = name
        self.root = root
        self.version = version(root)

    @property
    def available(self) -> bool:
        return self.version is not None

    def directories(self) -> list[Path]:
        if self.version == 2:
            return [self.root / PARENT / self.name]
        if self.version == 1:
            return [self.root / c / PARENT / self.name for c in V1_CONTROLLERS]
        return []

    def create(self) -> None:
        if self.version == 2:
            parent = self.root / PARENT
            parent.mkdir(exist_ok=True)
            _enable_v2_controllers(self.root, parent)
        for directory in self.directories():
            directory.mkdir(parents=True, exist_ok=True)

    def add(self, pid: int) -> None:
        """Move the process (all its threads) into the group."""
        for directory in self.directories():
            (directory / "cgroup.procs").write_text(f"{pid}\n")

    def apply(self, limits: CpuMemLimits) -> None:
        if self.version == 2:
            group = self.directories()[0]
            _write(group / "cpu.weight", str(limits.cpu_weight))
            quota = "max" if limits.cpu_cap is None else str(int(limits.cpu_cap * CFS_PERIOD_US))
            _write(group / "cpu.max", f"{quota} {CFS_PERIOD_US}")
            _write(group / "memory.max", str(limits.memory_max or "max"))
        elif self.version == 1:
            cpu, memory = self.directories()
            _write(cpu / "cpu.shares", str(max(2, limits.cpu_weight * 1024 // DEFAULT_WEIGHT)))
            _write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            cfs_quota = -1 if limits.cpu_cap is None else int(limits.cpu_cap * CFS_PERIOD_US)
            _write(cpu / "cpu.cfs_quota_us", str(cfs_quota))
            _write(memory / "memory.limit_in_bytes", str(limits.memory_max or -1))

    def usage(self) -> dict[str, int]:
        """CPU time (ns), throttled time (ns) and memory in use (bytes) of the group."""
        stats: dict[str, int] = {}
        if self.version == 2:
            group = self.directories()[0]
            cpu_stat = _keyed(group / "cpu.stat")
            stats["cpu_ns"] = cpu_stat.get("usage_usec", 0) * 1000
            stats["throttled_ns"] = cpu_stat.get("throttled_usec", 0) * 1000
            stats["memory"] = _int(group / "memory.current")
        elif self.version == 1:
            cpu, memory = self.directories()
            stats["throttled_ns"] = _keyed(cpu / "cpu.stat").get("throttled_time", 0)
            stats["memory"] = _int(memory / "memory.usage_in_bytes")
        return stats

    def oom_kills(self) -> int:
        """How many of the group's processes the kernel's OOM killer ended because the group
        reached its memory limit (``oom_kill`` of cgroup v2's ``memory.events``, of v1's
        ``memory.oom_control``; 0 without a group)."""
        if self.version == 2:
            return _keyed(self.directories()[0] / "memory.events").get("oom_kill", 0)
        if self.version == 1:
            return _keyed(self.directories()[1] / "memory.oom_control").get("oom_kill", 0)
        return 0

    def remove(self) -> None:
        """Remove the group; processes still in it (none, normally) go back to the parent."""
        for directory in self.directories():
            if not directory.exists():
                continue
            top = directory.parent.parent / "cgroup.procs"
            with contextlib.suppress(OSError):
                for pid in (directory / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        top.write_text(f"{pid}\n")
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()


def remove_empty_groups(root: Path = ROOT) -> int:
    """Remove VM groups no process is in (left by QEMUs killed while no daemon watched).

    A group with a process in it cannot be removed (the kernel refuses), so a
    running VM's group, of this daemon or another, is never touched. Returns
    how many went.
    """
    kind = version(root)
    parents = (
        [root / PARENT]
        if kind == 2
        else [root / c / PARENT for c in V1_CONTROLLERS]
        if kind
        else []
    )
    removed = 0
    for parent in parents:
        if not parent.is_dir():
            continue
        for group in parent.iterdir():
            if not group.is_dir():
                continue
            with contextlib.suppress(OSError):
                if not (group / "cgroup.procs").read_text().split():
                    group.rmdir()
                    removed += 1
    return removed


def _enable_v2_controllers(root: Path, parent: Path) -> None:
    wanted = {"cpu", "memory"}
    for directory in (root, parent):
        have = set((directory / "cgroup.controllers").read_text().split())
        missing = wanted - have
        if missing:
            raise UserError(
                f"This host's cgroups lack the {', '.join(sorted(missing))} controller; "
                "CPU and memory limits cannot be applied."
            )
        enabled = set((directory / "cgroup.subtree_control").read_text().split())
        for controller in wanted - enabled:
            _write(directory / "cgroup.subtree_control", f"+{controller}")


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value + "\n")
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise UserError(
                f"bungalowd may not write {path} ({os.strerror(exc.errno)}); run it as root "
                "or delegate a cgroup to its user."
            ) from None
        raise


def _keyed(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, number = line.partition(" ")
            if number.strip().isdigit():
                values[key] = int(number)
    return values


def _int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
