"""Which boots write the VM's machine-id from the kernel command line, and which need the agent."""

from __future__ import annotations

from pathlib import Path

from bungalow.daemon.vms.boot import boot_sets_machine_id, machine_id_word
from bungalow.qemu.argv import MachineSpec

OWN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def spec(tmp_path: Path, **overrides: object) -> MachineSpec:
    values: dict[str, object] = {
        "name": "web",
        "cpus": 1,
        "memory": 512 << 20,
        "profile": "micro",
        "disk": tmp_path / "disk.qcow2",
        "kernel": tmp_path / "vmlinux",
        "initrd": tmp_path / "initrd.img",
        "accel": "tcg",
        "run_dir": tmp_path / "run",
        "tsc_khz": 0,
        "cmdline_extra": machine_id_word(OWN),
    }
    values.update(overrides)
    return MachineSpec(**values)  # type: ignore[arg-type]


def test_a_fresh_boot_writes_its_own_machine_id(tmp_path: Path) -> None:
    assert boot_sets_machine_id(spec(tmp_path), OWN)


def test_a_recorded_command_line_naming_another_or_none_needs_the_agent(tmp_path: Path) -> None:
    cloned = f"console=ttyS0 root=/dev/vda {machine_id_word(OTHER)}"
    assert not boot_sets_machine_id(spec(tmp_path, cmdline=cloned), OWN)
    assert not boot_sets_machine_id(spec(tmp_path, cmdline="console=ttyS0 root=/dev/vda"), OWN)


def test_without_the_initramfs_nothing_reads_the_word(tmp_path: Path) -> None:
    assert not boot_sets_machine_id(spec(tmp_path, initrd=None), OWN)
