"""Admission against allocation ratios: the refusal names the resource, the ask and what is left."""

from __future__ import annotations

import pytest

from bungalow.errors import CapacityError
from bungalow.host.allocation import Allocation, Ratios, Shape

GIB = 1 << 30


def _host(allocated: Shape, ratios: Ratios | None = None) -> Allocation:
    return Allocation(
        total=Shape(2, 24 * GIB, 100 * GIB), ratios=ratios or Ratios(), allocated=allocated
    )


def test_cpus_are_overcommitted_four_times_by_default() -> None:
    host = _host(Shape(7, 0, 0))
    assert host.limit.cpus == 8 and host.free.cpus == 1
    host.admit(Shape(1, GIB, GIB))
    with pytest.raises(CapacityError, match=r"asked for 2, 1 of 8 left \(2 CPUs x 4\)"):
        host.admit(Shape(2, GIB, GIB))


def test_memory_and_disk_are_not_overcommitted_by_default() -> None:
    host = _host(Shape(0, 23 * GIB, 99 * GIB))
    with pytest.raises(CapacityError, match=r"memory .* asked for 2G, 1G of 24G left"):
        host.admit(Shape(1, 2 * GIB, 0))
    with pytest.raises(CapacityError, match=r"disk .* asked for 4G, 1G of 100G left"):
        host.admit(Shape(1, GIB, 4 * GIB))


def test_ratios_change_the_limits() -> None:
    host = _host(Shape(0, 30 * GIB, 0), Ratios(cpu=1.0, memory=1.5, disk=0.5))
    assert host.limit == Shape(2, 36 * GIB, 50 * GIB)
    assert host.free.memory == 6 * GIB
    host.admit(Shape(2, 6 * GIB, 50 * GIB))
