"""The balloon of a VM's machine: its QEMU arguments, the command line word that records
it, how a saved machine's device set is inferred from that word, and the floor's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms.balloon import (
    MIN_FLOOR,
    BalloonBook,
    FloorChange,
    check_floor,
    has_balloon,
)
from bungalow.daemon.vms.boot import with_cmdline
from bungalow.errors import UserError
from bungalow.qemu.argv import BALLOON_WORD, MachineSpec, build_argv, kernel_cmdline
from tests.qemu.test_qemu_argv import make_qcow2

MIB = 1 << 20


def spec(tmp_path: Path, **overrides: object) -> MachineSpec:
    values: dict[str, object] = {
        "name": "web", "cpus": 1, "memory": 512 * MIB, "profile": "micro",
        "disk": tmp_path / "disk.qcow2", "kernel": tmp_path / "vmlinux", "accel": "tcg",
        "run_dir": tmp_path / "run", "tsc_khz": 0, "balloon": True,
    }  # fmt: skip
    values.update(overrides)
    return MachineSpec(**values)  # type: ignore[arg-type]


def _devices(machine: MachineSpec) -> list[str]:
    make_qcow2(machine.disk)  # build_argv reads its header to name the format
    argv = build_argv(machine, "qemu-system-x86_64")
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]


@pytest.mark.parametrize(
    ("profile", "arch", "device"),
    [
        ("micro", "x86_64", "virtio-balloon-device"),
        ("pc", "x86_64", "virtio-balloon-pci"),
        ("micro", "aarch64", "virtio-balloon-device"),
    ],
)
def test_the_balloon_reports_free_pages_on_every_board(
    tmp_path: Path, profile: str, arch: str, device: str
) -> None:
    devices = _devices(spec(tmp_path, profile=profile, arch=arch))
    balloon = f"{device},id=balloon0,free-page-reporting=on,deflate-on-oom=on"
    assert devices[-1] == balloon  # last: the devices before it keep their slots
    assert BALLOON_WORD in kernel_cmdline(spec(tmp_path, profile=profile, arch=arch)).split()


def test_a_machine_without_a_balloon_has_neither_device_nor_word(tmp_path: Path) -> None:
    machine = spec(tmp_path, balloon=False)
    assert not any("balloon" in device for device in _devices(machine))
    assert BALLOON_WORD not in kernel_cmdline(machine)


def test_a_balloon_needs_a_kernel_to_record_it(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="kernel command line"):
        spec(tmp_path, profile="pc", kernel=None)


def test_a_machine_saved_before_balloons_loads_without_one(tmp_path: Path) -> None:
    old = "console=ttyS0 quiet panic=-1 root=/dev/vda bungalow.hostname=web"
    assert not with_cmdline(spec(tmp_path), old).balloon
    assert with_cmdline(spec(tmp_path), f"{old} {BALLOON_WORD}").balloon
    # A saved machine that had one keeps it even when balloons are now off for new boots.
    assert with_cmdline(spec(tmp_path, balloon=False), f"{old} {BALLOON_WORD}").balloon


def _vm(name: str = "web", memory: int = 1024 * MIB, **changes: object) -> VmRecord:
    vm = VmRecord(
        id=name, name=name, state=VmState.RUNNING, image_id="i", image_name="i",
        profile="micro", cpus=1, memory=memory, disk_size=4 << 30,
        cmdline=f"root=/dev/vda {BALLOON_WORD}",
    )  # fmt: skip
    return vm.with_changes(**changes)


def test_a_vm_has_a_balloon_when_its_command_line_says_so() -> None:
    assert has_balloon(_vm())
    assert not has_balloon(_vm(cmdline="root=/dev/vda"))
    assert not has_balloon(_vm(cmdline=None))


def test_the_floor_is_checked_against_the_memory_and_the_lowest_floor() -> None:
    assert check_floor(None, 1024 * MIB, "web") is None
    assert check_floor(256 * MIB, 1024 * MIB, "web") == 256 * MIB
    assert check_floor(1024 * MIB, 1024 * MIB, "web") == 1024 * MIB
    with pytest.raises(UserError, match=r"above its memory \(1G\); give --memory-min 1G or less"):
        check_floor(2048 * MIB, 1024 * MIB, "web")
    with pytest.raises(UserError, match="below 128M"):
        check_floor(MIN_FLOOR - MIB, 1024 * MIB, "web")


@pytest.mark.parametrize(("text", "floor"), [("512M", 512 * MIB), ("none", None), (0, None)])
def test_a_floor_change_parses_sizes_and_none(text: str | int, floor: int | None) -> None:
    assert FloorChange.parse(text).floor == floor


def test_a_floor_that_is_not_a_size_is_one_sentence() -> None:
    with pytest.raises(UserError, match="memory floor"):
        FloorChange.parse("lots")


def test_the_book_counts_memory_above_floors_where_balloons_are_headed() -> None:
    book = BalloonBook()
    floored = _vm("a", memory_min=256 * MIB)
    free = _vm("b")  # no floor: nothing to take back
    unseen = _vm("c", memory_min=256 * MIB)  # never seen by the pressure controller
    assert book.reclaimable([floored, free, unseen]) == 0
    assert book.saw("a", 10, 1024 * MIB) == 1024 * MIB
    assert book.saw("b", 12, 1024 * MIB) == 1024 * MIB
    assert book.reclaimable([floored, free, unseen]) == 768 * MIB
    book.asked("a", 10, 512 * MIB)
    # The guest has not got there yet; the book plans from the target it was asked for.
    assert book.saw("a", 10, 900 * MIB) == 512 * MIB
    assert book.reclaimable([floored]) == 256 * MIB
    # Started again (another QEMU): seen afresh.
    assert book.saw("a", 11, 1024 * MIB) == 1024 * MIB
    assert book.reclaimable([floored]) == 768 * MIB
    book.forget_all_but(set())
    assert book.reclaimable([floored]) == 0
