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


@dataclass(frozen=True)
class GivenBack:
    """What a running guest hands back to the host, in bytes.

    ``ballooned``: held by its balloon (its memory less QEMU's ``query-balloon``
    actual), which the daemon took under pressure. ``reported``: the guest's free
    memory (virtio-balloon stats, ``stat-free-memory``), which free page reporting
    returns to the host in blocks of 2 MiB and more within seconds of being freed;
    None until the guest's first stats arrive (a few seconds after the first ask).
    """

    ballooned: int
    reported: int | None

    @property
    def total(self) -> int:
        return self.ballooned + (self.reported or 0)


async def given_back(vm: VmRecord, runtime: VmRuntime) -> GivenBack | None:
    """What the VM gives back now (see :class:`GivenBack`); None for a VM with no balloon
    or no monitor, or whose QEMU did not answer."""
    if not has_balloon(vm) or runtime.monitor is None or not runtime.monitor.connected:
        return None
    try:
        actual = await qmp_balloon.actual(runtime.monitor)
        guest = await qmp_balloon.guest_memory(runtime.monitor)
    except QemuError:
        return None
    return GivenBack(ballooned=max(0, vm.memory - actual), reported=guest.free)


class BalloonBook:
    """What each running VM's balloon last left it (QMP ``query-balloon``'s actual), by name.

    The pressure controller writes it on every look (policies/pressure.py); admission
    reads it to count the memory the host could take back (vms/admission.py). It lives
    in memory only: a new daemon's first look fills it again from each QEMU.
    """

    def __init__(self) -> None:
        self._actual: dict[str, int] = {}

    def saw(self, name: str, actual: int) -> None:
        self._actual[name] = actual

    def forget_all_but(self, names: set[str]) -> None:
        for name in set(self._actual) - names:
            del self._actual[name]

    def reclaimable(self, vms: Iterable[VmRecord]) -> int:
        """Bytes the balloons of ``vms`` could still take back: each one's memory (as its
        balloon last left it) above its floor; nothing from a VM with no floor."""
        total = 0
        for vm in vms:
            if vm.memory_min is not None and has_balloon(vm):
                total += max(0, self._actual.get(vm.name, vm.memory) - vm.memory_min)
        return total
