"""Disk format, backing chains and the cache/aio choice, on real files and file systems."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bungalow.errors import NotFoundError
from bungalow.qemu import disk as qemu_disk
from bungalow.qemu.argv import MachineSpec
from bungalow.qemu.disk import (
    BUFFERED_IO_URING,
    BUFFERED_THREADS,
    DIRECT_NATIVE,
    backing_chain,
    choose_disk_io,
    disk_format,
)
from bungalow.qemu.process import launch, pid_alive, terminate


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", "create", "-q", *args], check=True)


def direct_io_allowed(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
    except OSError:
        return False
    return True


@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[Path]:
    """A ramfs mount: a file system without O_DIRECT (tmpfs has it since Linux 6.6)."""
    mount_point = tmp_path / "ramfs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "ramfs", "ramfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a ramfs here: {mounted.stderr.decode().strip()}")
    qemu_disk._direct_io_by_device.clear()
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)
    qemu_disk._direct_io_by_device.clear()


def test_format_is_read_from_the_header(tmp_path: Path) -> None:
    qemu_img("-f", "qcow2", str(tmp_path / "a.qcow2"), "1M")
    qemu_img("-f", "raw", str(tmp_path / "a.img"), "1M")
    assert disk_format(tmp_path / "a.qcow2") == "qcow2"
    assert disk_format(tmp_path / "a.img") == "raw"


def test_backing_chain_follows_relative_and_absolute_names(tmp_path: Path) -> None:
    qemu_img("-f", "qcow2", str(tmp_path / "base.qcow2"), "1M")
    qemu_img("-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", str(tmp_path / "mid.qcow2"))
    mid = str(tmp_path / "mid.qcow2")
    qemu_img("-f", "qcow2", "-F", "qcow2", "-b", mid, str(tmp_path / "top.qcow2"))
    assert backing_chain(tmp_path / "top.qcow2") == [
        tmp_path / "top.qcow2",
        tmp_path / "mid.qcow2",
        tmp_path / "base.qcow2",
    ]


def test_missing_disk_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        choose_disk_io(tmp_path / "nope.qcow2")


def test_direct_io_where_the_file_system_allows_it(tmp_path: Path) -> None:
    qemu_img("-f", "qcow2", str(tmp_path / "a.qcow2"), "1M")
    expected_direct = direct_io_allowed(tmp_path / "a.qcow2")
    assert (choose_disk_io(tmp_path / "a.qcow2") == DIRECT_NATIVE) == expected_direct


def test_buffered_io_without_o_direct(ramfs: Path) -> None:
    qemu_img("-f", "qcow2", str(ramfs / "a.qcow2"), "1M")
    assert choose_disk_io(ramfs / "a.qcow2") in (BUFFERED_IO_URING, BUFFERED_THREADS)


def test_one_backing_file_without_o_direct_is_enough_to_fall_back(
    tmp_path: Path, ramfs: Path
) -> None:
    qemu_img("-f", "qcow2", str(ramfs / "base.qcow2"), "1M")
    overlay = tmp_path / "overlay.qcow2"
    qemu_img("-f", "qcow2", "-F", "qcow2", "-b", str(ramfs / "base.qcow2"), str(overlay))
    assert choose_disk_io(overlay) != DIRECT_NATIVE


@pytest.mark.vm
def test_qemu_accepts_the_fallback(ramfs: Path, make_spec: Callable[..., MachineSpec]) -> None:
    qemu_img("-f", "qcow2", str(ramfs / "disk.qcow2"), "64M")
    machine = make_spec(disk=ramfs / "disk.qcow2", cmdline_extra="test_action=wait")
    pid = launch(machine)
    assert pid_alive(pid, machine.run_dir)
    terminate(pid, machine.run_dir, timeout=5)
    assert not pid_alive(pid, machine.run_dir)
