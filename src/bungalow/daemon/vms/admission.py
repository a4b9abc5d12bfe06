"""Whether the host, its allocation ratios and the VM's project have room for a VM.

Three checks, in this order, each refusing with a sentence that names the
resource, what was asked and what is left:

1. the host now (host/resources.py): its CPUs, the memory available and, for a
   new VM, the disk free on the data directory's file system. Memory available
   is the kernel's MemAvailable plus what the host can take back through the
   balloons of running VMs: each one's memory above its ``--memory-min``, as its
   balloon last left it (vms/balloon.py ``BalloonBook``); a VM with no floor adds
   nothing. Under pressure the daemon then takes that memory back
   (policies/pressure.py);
2. the project's quota (tenancy/projects.py, passed in as ``quota``);
3. the allocation ratios (host/allocation.py): vCPUs and memory of VMs with a
   QEMU, disks of every VM, against ``capacity x ratio``.

Creating a VM counts its disk; starting one (it has its disk already) does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from bungalow.daemon.state.lifecycle import ACTIVE_STATES
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.state.vms import VmTable
from bungalow.daemon.vms.balloon import BalloonBook
from bungalow.host.allocation import Allocation, Ratios, Shape
from bungalow.host.resources import HostCapacity, check_fits, read_capacity

#: Refuses (CapacityError) a VM its project has no room for: (vm, starting).
QuotaCheck = Callable[[VmRecord, bool], None]


class Admission:
    def __init__(
        self,
        vms: VmTable,
        data_root: Path,
        ratios: Ratios,
        quota: QuotaCheck | None = None,
        balloons: BalloonBook | None = None,
    ) -> None:
        self._vms = vms
        self._balloons = balloons
        self._root = data_root
        self.ratios = ratios
        self._quota = quota
        #: VMs with a QEMU but no row (sandbox templates being made), by id.
        self._reserved: dict[str, Shape] = {}

    @contextlib.contextmanager
    def reserve(self, vm: VmRecord) -> Iterator[None]:
        """Count ``vm`` (which has no row) as allocated for the block."""
        self._reserved[vm.id] = Shape(vm.cpus, vm.memory, vm.disk_size)
        try:
            yield
        finally:
            del self._reserved[vm.id]

    def capacity(self) -> HostCapacity:
        """The host's CPUs, memory and the data directory's disk, now (reads /proc, statvfs)."""
        return read_capacity(self._root)

    def allocation(self, exclude: str | None = None) -> Allocation:
        """What the host has promised: vCPUs and memory of VMs with a QEMU, disks of all."""
        capacity = self.capacity()
        allocated = Shape()
        for shape in self._reserved.values():
            allocated += shape
        for vm in self._vms.list():
            if vm.name == exclude:
                continue
            active = vm.state in ACTIVE_STATES
            allocated += Shape(vm.cpus if active else 0, vm.memory if active else 0, vm.disk_size)
        total = Shape(capacity.cpus, capacity.memory_bytes, capacity.disk_total)
        return Allocation(total=total, ratios=self.ratios, allocated=allocated)

    def check(self, vm: VmRecord, *, creating: bool) -> None:
        """Refuse (CapacityError) a VM to be created, or started, that there is no room for."""
        disk = vm.disk_size if creating else 0
        capacity = self.capacity()
        if self._balloons is not None:
            running = [v for v in self._vms.list() if v.state in ACTIVE_STATES]
            reclaimable = self._balloons.reclaimable(running)
            capacity = replace(capacity, memory_available=capacity.memory_available + reclaimable)
        check_fits(vm.cpus, vm.memory, disk, capacity)
        if self._quota is not None:
            self._quota(vm, not creating)
        self.allocation(exclude=vm.name).admit(Shape(vm.cpus, vm.memory, disk), f"the VM {vm.name}")
