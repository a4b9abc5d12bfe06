"""What the host has promised to VMs, against what it may promise: allocation ratios.

As in OpenStack Nova, the host may promise more vCPUs than it has CPUs (idle
VMs do not use theirs; the default ratio is 4.0) but, by default, no more
memory or disk than it has (1.0): an overcommitted host swaps or runs out of
space at the worst moment. A VM is admitted only if what it asks fits in
``capacity x ratio - allocated`` for every resource; the refusal names the
resource, what was asked and what is left.
"""

from __future__ import annotations

from dataclasses import dataclass

from bungalow.errors import CapacityError
from bungalow.units import format_size


@dataclass(frozen=True)
class Ratios:
    cpu: float = 4.0
    memory: float = 1.0
    disk: float = 1.0


@dataclass(frozen=True)
class Shape:
    """vCPUs, memory and disk bytes: one VM's, or a sum of them."""

    cpus: int = 0
    memory: int = 0
    disk: int = 0

    def __add__(self, other: Shape) -> Shape:
        return Shape(self.cpus + other.cpus, self.memory + other.memory, self.disk + other.disk)


@dataclass(frozen=True)
class Allocation:
    """The host's totals, the ratios, and what is allocated: enough to admit or refuse."""

    total: Shape
    ratios: Ratios
    allocated: Shape

    @property
    def limit(self) -> Shape:
        return Shape(
            int(self.total.cpus * self.ratios.cpu),
            int(self.total.memory * self.ratios.memory),
            int(self.total.disk * self.ratios.disk),
        )

    @property
    def free(self) -> Shape:
        limit = self.limit
        return Shape(
            max(0, limit.cpus - self.allocated.cpus),
            max(0, limit.memory - self.allocated.memory),
            max(0, limit.disk - self.allocated.disk),
        )

    def admit(self, asked: Shape, what: str = "this VM") -> None:
        """Raise CapacityError naming the first resource ``asked`` does not fit in."""
        free, limit = self.free, self.limit
        if asked.cpus > free.cpus:
            raise CapacityError(
                f"Not enough vCPUs on this host for {what}: asked for {asked.cpus}, "
                f"{free.cpus} of {limit.cpus} left ({self.total.cpus} CPUs x "
                f"{self.ratios.cpu:g}); stop a VM or raise [allocation] cpu in config.toml."
            )
        if asked.memory > free.memory:
            raise CapacityError(
                f"Not enough memory on this host for {what}: asked for "
                f"{format_size(asked.memory)}, {format_size(free.memory)} of "
                f"{format_size(limit.memory)} left; stop a VM, ask for less, or raise "
                "[allocation] memory in config.toml."
            )
        if asked.disk > free.disk:
            raise CapacityError(
                f"Not enough disk on this host for {what}: asked for "
                f"{format_size(asked.disk)}, {format_size(free.disk)} of "
                f"{format_size(limit.disk)} left; remove a VM, ask for less, or raise "
                "[allocation] disk in config.toml."
            )
