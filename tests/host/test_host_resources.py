"""Host capacity from the kernel, the fit check's sentences, and the port probe."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from bungalow.errors import CapacityError, UserError
from bungalow.host.ports import port_in_use
from bungalow.host.resources import HostCapacity, check_fits, read_capacity

GIB = 1 << 30
HOST = HostCapacity(
    cpus=2, memory_bytes=8 * GIB, memory_available=6 * GIB, disk_total=100 * GIB, disk_free=20 * GIB
)


def test_capacity_comes_from_the_kernel(tmp_path: Path) -> None:
    capacity = read_capacity(tmp_path)
    assert capacity.cpus == len(os.sched_getaffinity(0))
    assert 0 < capacity.memory_available <= capacity.memory_bytes
    assert 0 < capacity.disk_free <= capacity.disk_total
    stat = os.statvfs(tmp_path)
    assert capacity.disk_total == stat.f_blocks * stat.f_frsize


def test_a_data_dir_not_yet_created_measures_its_parent(tmp_path: Path) -> None:
    assert read_capacity(tmp_path / "a" / "b").disk_total == read_capacity(tmp_path).disk_total


def test_a_vm_that_takes_exactly_what_is_left_fits_and_one_more_does_not() -> None:
    check_fits(2, 6 * GIB, 20 * GIB, HOST)  # every CPU, all available memory, all free disk
    for cpus, memory, disk, short in (
        (3, 6 * GIB, 20 * GIB, "CPUs"),
        (2, 6 * GIB + 1, 20 * GIB, "memory"),
        (2, 6 * GIB, 20 * GIB + 1, "disk"),
    ):
        with pytest.raises(CapacityError, match=short):
            check_fits(cpus, memory, disk, HOST)


@pytest.mark.parametrize(
    ("cpus", "memory", "disk", "message"),
    [
        (4, GIB, GIB, "The host has 2 CPUs; asked for 4. Use --cpus 2 or fewer."),
        (
            1,
            7 * GIB,
            GIB,
            "The host has 6G of memory available; asked for 7G. Use --memory 6G or less, or "
            "stop other VMs.",
        ),
        (
            1,
            GIB,
            30 * GIB,
            "The data directory's disk has 20G free; asked for 30G. Use --disk 20G or less, "
            "or delete unused VMs, snapshots and images.",
        ),
    ],
)
def test_what_does_not_fit_is_named(cpus: int, memory: int, disk: int, message: str) -> None:
    with pytest.raises(CapacityError) as caught:
        check_fits(cpus, memory, disk, HOST)
    assert caught.value.message == message


def test_one_cpu_is_singular() -> None:
    one = HostCapacity(1, GIB, GIB, GIB, GIB)
    with pytest.raises(CapacityError, match=r"^The host has 1 CPU; asked for 2\."):
        check_fits(2, 1, 1, one)


@pytest.mark.parametrize(
    ("proto", "kind"), [("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)]
)
def test_port_in_use(proto: str, kind: socket.SocketKind) -> None:
    holder = socket.socket(socket.AF_INET, kind)
    holder.bind(("127.0.0.1", 0))
    if proto == "tcp":
        holder.listen()
    port = holder.getsockname()[1]
    assert port_in_use("127.0.0.1", port, proto)  # type: ignore[arg-type]
    holder.close()
    assert not port_in_use("127.0.0.1", port, proto)  # type: ignore[arg-type]


def test_a_port_held_on_every_interface_is_in_use_on_loopback() -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        assert port_in_use("127.0.0.1", holder.getsockname()[1])


def test_an_address_this_host_lacks_is_named_not_called_busy() -> None:
    with pytest.raises(UserError, match=r"192\.0\.2\.7 is not an address of this host"):
        port_in_use("192.0.2.7", 18558)  # TEST-NET-1: never a local address
