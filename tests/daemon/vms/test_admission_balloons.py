"""Admission counts the memory balloons can take back from running VMs above their floors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.daemon.server.config import Config
from bungalow.daemon.state.lifecycle import VmState
from bungalow.errors import CapacityError
from bungalow.host.allocation import Ratios
from bungalow.qemu.argv import BALLOON_WORD
from tests.daemon.conftest import build_daemon
from tests.daemon.records import GIB, SetClock, put, vm


def test_memory_above_floors_counts_as_available(tmp_path: Path) -> None:
    daemon = build_daemon(tmp_path, SetClock(), Config(ratios=Ratios(memory=100.0)))
    try:
        admission = daemon.vms.admission
        available = admission.capacity().memory_available
        big = vm("big", memory=available + 8 * GIB, memory_min=GIB, cmdline=BALLOON_WORD)
        put(daemon.store, big, VmState.RUNNING)
        put(daemon.store, vm("nofloor", memory=64 * GIB, cmdline=BALLOON_WORD), VmState.RUNNING)
        # More than the host has, less than it has plus what big's balloon can take back
        # (a margin of GiBs: MemAvailable moves while the test runs).
        ask = vm("new", memory=available + 4 * GIB)
        # Not counted until the pressure controller has seen big's balloon in its QEMU
        # (one restored from a snapshot never is: its balloon would free nothing).
        with pytest.raises(CapacityError, match="of memory available"):
            admission.check(ask, creating=False)
        daemon.pressure.book.saw("big", 1, big.memory)
        admission.check(ask, creating=False)
        # Once big's balloon is headed for 2G, only 1G of it is left to take.
        daemon.pressure.book.asked("big", 1, 2 * GIB)
        with pytest.raises(CapacityError, match="of memory available"):
            admission.check(ask, creating=False)
    finally:
        daemon.store.close()
