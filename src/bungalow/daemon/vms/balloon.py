"""A VM's balloon as the daemon sees it: the floor (``--memory-min``), and what the guest gave back.

Every VM bungalow boots from a kernel has a virtio-balloon with free page
reporting (qemu/argv.py ``_balloon_args``; ``[memory] balloon = false`` in
config.toml leaves it out of VMs booted from then on). Its kernel command line
says so (``BALLOON_WORD``), and a VM saved before balloons existed says nothing,
which is how a snapshot's machine gets the device set of its stream
(vms/boot.py ``with_cmdline``).

The floor is what the host may take the VM down to under memory pressure
(policies/pressure.py); a VM with none (NULL) is never ballooned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms.runtime import VmRuntime
from bungalow.errors import QemuError, UserError
from bungalow.qemu import balloon as qmp_balloon
from bungalow.qemu import private_ram
from bungalow.qemu.argv import BALLOON_WORD
from bungalow.units import format_size, parse_size

#: The lowest floor: a Debian guest below this starts killing processes (its kernel and
#: systemd alone take some 60-90 MiB).
MIN_FLOOR = 128 << 20


def check_floor(floor: int | None, memory: int, name: str) -> int | None:
    """``floor`` (bytes, None: no floor) if it suits a VM of ``memory`` bytes; else UserError."""
    if floor is None:
        return None
    if floor > memory:
        raise UserError(
            f"The memory floor {format_size(floor)} of {name} is above its memory "
            f"({format_size(memory)}); give --memory-min {format_size(memory)} or less."
        )
    if floor < MIN_FLOOR:
        raise UserError(
            f"The memory floor {format_size(floor)} of {name} is below {format_size(MIN_FLOOR)}, "
            f"under which a guest starts killing its processes; give --memory-min "
            f"{format_size(MIN_FLOOR)} or more (or none for no floor)."
        )
    return floor


@dataclass(frozen=True)
class FloorChange:
    """A new balloon floor for a VM: bytes, or None for no floor."""

    floor: int | None

    @classmethod
    def parse(cls, value: int | str) -> FloorChange:
        """``512M``, bytes, or ``0``/``none`` for no floor; UserError for anything else."""
        if value in (0, "0", "none", ""):
            return cls(None)
        return cls(parse_size(value, what="memory floor (--memory-min)"))


def floor_sentence(floor: int | None) -> str:
    """The event recorded when a VM's floor changes."""
    if floor is None:
        return "no memory floor: the host never takes memory back through its balloon"
    return f"memory floor {format_size(floor)}: the host may balloon it down to that"


def has_balloon(vm: VmRecord) -> bool:
    """Whether the VM's running QEMU has a balloon: it booted with ``BALLOON_WORD``."""
    return vm.cmdline is not None and BALLOON_WORD in vm.cmdline.split()


def frees_host_memory(vm: VmRecord, pid: int) -> bool:
    """Whether what the VM's balloon takes and its guest frees leaves the host: it has a
    balloon and its QEMU ``pid`` does not map a snapshot's RAM privately (a restored or
    cloned VM's discards are refused to keep the snapshot whole: qemu/private_ram.py)."""
    return has_balloon(vm) and not private_ram.maps_file_privately(pid)


@dataclass(frozen=True)
class GivenBack:
    """What a running guest hands back to the host, in bytes.

    ``ballooned``: held by its balloon (its memory less QEMU's ``query-balloon``
    actual), which the daemon took under pressure. ``reported``: the guest's free
    memory (virtio-balloon stats, ``stat-free-memory``), which the host does not hold
    for it: free page reporting returns what the guest frees, in blocks of 2 MiB and
    more, within seconds (and what it never touched was never held). None until the
    guest's first stats arrive. The host's side of it (the QEMU's RSS against the
    guest's memory) is the overhead figures' to weigh.
    """

    ballooned: int
    reported: int | None

    @property
    def total(self) -> int:
        return self.ballooned + (self.reported or 0)


async def given_back(vm: VmRecord, runtime: VmRuntime) -> GivenBack | None:
    """What the VM gives back now (see :class:`GivenBack`); None for a VM with no balloon,
    one whose discards stay on the host (``frees_host_memory``), no monitor, or whose QEMU
    did not answer."""
    if runtime.monitor is None or not runtime.monitor.connected:
        return None
    if not frees_host_memory(vm, runtime.pid):
        return None
    try:
        actual = await qmp_balloon.actual(runtime.monitor)
        guest = await qmp_balloon.guest_memory(runtime.monitor)
    except QemuError:
        return None
    return GivenBack(ballooned=max(0, vm.memory - actual), reported=guest.free)


class BalloonBook:
    """Where each running VM's balloon is headed: the target the daemon last asked of it,
    else what its QEMU last said it has (``query-balloon``'s actual), by name.

    A guest inflates its balloon over seconds (some 100 MiB a second under TCG), so
    the pressure controller plans from the target it set, not from where the guest
    has got to, and asks once (policies/pressure.py); admission reads it to count the
    memory the host could take back (vms/admission.py). Kept with the QEMU's pid, so
    a VM started again is seen afresh; in memory only: a new daemon's first look
    finds each balloon as its QEMU has it.
    """

    def __init__(self) -> None:
        self._headed: dict[str, tuple[int, int, bool]] = {}  # name: (pid, bytes, asked)

    def saw(self, name: str, pid: int, actual: int) -> int:
        """Note ``actual`` of the QEMU ``pid``; returns where its balloon is headed."""
        known = self._headed.get(name)
        if known is not None and known[0] == pid and known[2]:
            return known[1]
        self._headed[name] = (pid, actual, False)
        return actual

    def asked(self, name: str, pid: int, target: int) -> None:
        """The daemon asked the QEMU ``pid`` for ``target`` bytes."""
        self._headed[name] = (pid, target, True)

    def forget_all_but(self, names: set[str]) -> None:
        for name in set(self._headed) - names:
            del self._headed[name]

    def reclaimable(self, vms: Iterable[VmRecord]) -> int:
        """Bytes the balloons of ``vms`` could still take back: each one's memory (where
        its balloon is headed) above its floor; nothing from a VM with no floor, nor from
        one the pressure controller has not seen as balloonable (``frees_host_memory``)."""
        total = 0
        for vm in vms:
            known = self._headed.get(vm.name)
            if vm.memory_min is not None and known is not None:
                total += max(0, known[1] - vm.memory_min)
        return total
