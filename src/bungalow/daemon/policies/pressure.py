"""Memory pressure: taking memory back through the balloons of VMs, and giving it back.

Every ``pressure_interval`` the daemon reads the host's MemAvailable. Below
``pressure_below`` the host is under pressure: it asks the balloons of running
VMs to inflate until MemAvailable would be back at ``relief_above``, taking
from VMs above their ``--memory-min`` (vms/balloon.py), idle ones first and,
among those, the one with the most above its floor first, never below a floor,
never from a VM with no floor. Above ``relief_above`` the pressure is gone and
the balloons deflate again, as far as MemAvailable stays above that line; in
between nothing moves, so the two never chase each other. A VM whose floor was
lifted, or raised above what its balloon left it, gets its memory back at
once. Every move is an event on the VM (``bungalow events``, ``inspect``).

The balloons' sizes live in their QEMUs (``query-balloon``), not in the
database: a daemon SIGKILLed mid-way finds each balloon as it was and goes on.
This is Proxmox's auto-ballooning (pvestatd), with libvirt's memballoon
underneath; free page reporting (qemu/argv.py) works alongside and needs no
daemon at all.

::

    [memory]
    balloon = true            # a balloon with free page reporting in every VM booted
    pressure_below = "10%"    # MemAvailable under this (of MemTotal, or a size: "2G")
    relief_above = "20%"      # ... and back over this: give the memory back
    pressure_interval = "5s"
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bungalow.daemon.state.audit import acting_as
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.vms.balloon import BalloonBook, frees_host_memory
from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import QemuError, UserError
from bungalow.host.resources import read_memory
from bungalow.qemu import balloon as qmp_balloon
from bungalow.units import format_size, parse_duration, parse_size

log = logging.getLogger(__name__)

MIB = 1 << 20
#: Moves smaller than this are not worth a balloon request (and its event).
MIN_MOVE = 16 * MIB
#: The keys of ``[memory]`` this module reads, and those others read (the KSM controller's).
KEYS = ("balloon", "pressure_below", "relief_above", "pressure_interval")
OTHER_KEYS = ("ksm",)


@dataclass(frozen=True)
class Level:
    """A MemAvailable line: a fraction of MemTotal, or a size in bytes."""

    fraction: float | None = None
    size: int | None = None

    def of(self, total: int) -> int:
        return self.size if self.size is not None else int(total * (self.fraction or 0.0))

    @classmethod
    def parse(cls, value: object, key: str, path: object = "config.toml") -> Level:
        """``"10%"``, ``0.1`` or ``"2G"``; UserError naming ``key`` and ``path`` otherwise."""
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                percent = float(value.strip()[:-1])
            except ValueError:
                percent = -1.0
            if 0 < percent < 100:
                return cls(fraction=percent / 100)
        elif isinstance(value, float) and 0 < value < 1:
            return cls(fraction=value)
        elif isinstance(value, str | int) and not isinstance(value, bool):
            with contextlib.suppress(UserError):
                size = parse_size(value, what=f"memory.{key}")
                if size > 0:
                    return cls(size=size)
        raise UserError(
            f'memory.{key} in {path} must be a share of the host\'s memory such as "10%", or '
            f'a size such as "2G", not {value!r}.'
        )

    def __str__(self) -> str:
        if self.size is not None:
            return format_size(self.size)
        return f"{(self.fraction or 0.0) * 100:g}%"


@dataclass(frozen=True)
class MemoryConfig:
    """``[memory]`` in config.toml, the balloon's part (see the module's docstring)."""

    balloon: bool = True
    pressure_below: Level = Level(fraction=0.10)
    relief_above: Level = Level(fraction=0.20)
    pressure_interval: float = 5.0


def load_memory(table: dict[str, Any], path: object) -> MemoryConfig:
    """The balloon's keys of ``[memory]``, checked; a bad value is one sentence."""
    known = (*KEYS, *OTHER_KEYS)
    for key in table:
        if key not in known:
            raise UserError(
                f"memory.{key} in {path} is not a setting; the settings are "
                f"{', '.join(sorted(known))}."
            )
    balloon = table.get("balloon", True)
    if not isinstance(balloon, bool):
        raise UserError(f"memory.balloon in {path} must be true or false, not {balloon!r}.")
    below = Level.parse(table.get("pressure_below", "10%"), "pressure_below", path)
    above = Level.parse(table.get("relief_above", "20%"), "relief_above", path)
    if (below.fraction is None) != (above.fraction is None):
        raise UserError(
            f"memory.pressure_below and memory.relief_above in {path} must both be shares "
            '(such as "10%" and "20%") or both sizes (such as "2G" and "4G").'
        )
    if below.of(1 << 40) >= above.of(1 << 40):
        raise UserError(
            f"memory.relief_above ({above}) in {path} must be above memory.pressure_below "
            f"({below}), or the balloons would chase each other."
        )
    interval = parse_duration(table.get("pressure_interval", 5.0), what="memory.pressure_interval")
    if not 1 <= interval <= 3600:
        raise UserError(f"memory.pressure_interval in {path} must be from 1s to 1h.")
    return MemoryConfig(balloon, below, above, interval)


@dataclass(frozen=True)
class Balloonable:
    """A running VM with a balloon, as the choice sees it (bytes); ``actual`` is where its
    balloon is headed (vms/balloon.py ``BalloonBook``)."""

    name: str
    memory: int
    floor: int | None
    actual: int
    idle: bool


@dataclass(frozen=True)
class Move:
    """A new balloon target for one VM, and why: ``pressure``, ``relief`` or ``floor``."""

    name: str
    actual: int
    target: int
    why: str


def plan(available: int, low: int, high: int, vms: Sequence[Balloonable]) -> list[Move]:
    """The balloon moves for a host with ``available`` bytes of MemAvailable.

    First each VM is put back within its floor (no floor: all its memory; below its
    floor: up to it). Then under ``low`` memory is taken from VMs above their floors
    until ``high - available`` is found, idle VMs first, then the one with the most
    above its floor; over ``high``, what was taken is given back while ``available``
    stays over ``high``, busy VMs first. Moves come in whole MiB, none under MIN_MOVE.
    """
    moves: list[Move] = []
    settled: list[Balloonable] = []
    for vm in vms:
        floor = vm.memory if vm.floor is None else vm.floor
        if vm.actual < floor and floor - vm.actual >= MIN_MOVE:
            moves.append(Move(vm.name, vm.actual, floor, "floor"))
        else:
            settled.append(vm)
    order = sorted(
        (vm for vm in settled if vm.floor is not None),
        key=lambda vm: (not vm.idle, -(vm.actual - (vm.floor or 0)), vm.name),
    )
    if available < low:
        need = high - available
        for vm in order:
            take = min(need, vm.actual - (vm.floor or 0)) // MIB * MIB
            if take >= MIN_MOVE:
                moves.append(Move(vm.name, vm.actual, vm.actual - take, "pressure"))
                need -= take
            if need < MIN_MOVE:
                break
    elif available > high:
        room = available - high
        for vm in reversed(order):
            give = min(room, vm.memory - vm.actual) // MIB * MIB
            if give >= MIN_MOVE:
                moves.append(Move(vm.name, vm.actual, vm.actual + give, "relief"))
                room -= give
            if room < MIN_MOVE:
                break
    return moves


#: The names of VMs idle now (policies/idle.py ``Idleness.idle``).
IdleNames = Callable[[], set[str]]


class Pressure:
    """Watches the host's memory and moves balloons (see the module's docstring)."""

    def __init__(
        self,
        vms: VmManager,
        book: BalloonBook,
        idle_names: IdleNames,
        config: MemoryConfig,
        memory: Callable[[], tuple[int, int]] = read_memory,
    ) -> None:
        self.vms = vms
        self.book = book
        self.idle_names = idle_names
        self.config = config
        self._memory = memory

    async def look(self) -> list[Balloonable]:
        """Every running VM whose balloon frees host memory, with its balloon's size asked
        of its QEMU."""
        idle = self.idle_names()
        seen: list[Balloonable] = []
        for vm in self.vms.list():
            runtime = self.vms.runtime(vm.name)
            if vm.state is not VmState.RUNNING or runtime is None:
                continue
            if not frees_host_memory(vm, runtime.pid):
                continue  # no balloon, or a snapshot's RAM: its balloon would free nothing
            if runtime.monitor is None or not runtime.monitor.connected:
                continue
            try:
                actual = await qmp_balloon.actual(runtime.monitor)
            except QemuError:
                continue  # gone or going: the next look does without it
            headed = self.book.saw(vm.name, runtime.pid, actual)
            seen.append(Balloonable(vm.name, vm.memory, vm.memory_min, headed, vm.name in idle))
        self.book.forget_all_but({vm.name for vm in seen})
        return seen

    async def tick(self) -> list[Move]:
        """One look at the host's memory and the balloons, and the moves it called for."""
        total, available = await asyncio.to_thread(self._memory)
        low = self.config.pressure_below.of(total)
        high = self.config.relief_above.of(total)
        moves = plan(available, low, high, await self.look())
        done = []
        for move in moves:
            runtime = self.vms.runtime(move.name)
            if runtime is None or runtime.monitor is None:
                continue
            try:
                await qmp_balloon.set_target(runtime.monitor, move.target)
            except QemuError as exc:
                log.warning("balloon of %s: %s", move.name, exc.message)
                continue
            self.book.asked(move.name, runtime.pid, move.target)
            with acting_as("policy pressure", _WHY[move.why]):
                self.vms.store.events.add(move.name, "balloon", _sentence(move, available, low))
            done.append(move)
        return done

    async def run(self) -> None:
        """Look every ``pressure_interval`` until cancelled."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("the memory pressure check failed; trying again")
            await asyncio.sleep(self.config.pressure_interval)


_WHY = {
    "pressure": "the host ran short of memory",
    "relief": "the host has memory to spare again",
    "floor": "its memory floor",
}


def _sentence(move: Move, available: int, low: int) -> str:
    moved = format_size(abs(move.target - move.actual))
    now = f"it now has {format_size(move.target)}"
    if move.why == "pressure":
        return (
            f"took {moved} back through the balloon: the host had {format_size(available)} "
            f"of memory available, under {format_size(low)}; {now}"
        )
    if move.why == "relief":
        return (
            f"gave {moved} back through the balloon: the host has "
            f"{format_size(available)} available again; {now}"
        )
    return f"gave {moved} back through the balloon, to its memory floor; {now}"
