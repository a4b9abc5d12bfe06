"""The architectures bungalow runs, and what this host needs to run and build each."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.arch import (
    ARCH_INFO,
    ARCHES,
    binfmt_registered,
    check_arch,
    emulator_missing,
    runs_natively,
)
from bungalow.errors import UserError


def test_the_three_architectures_and_their_debian_names() -> None:
    assert ARCHES == ("x86_64", "i386", "aarch64")
    assert [ARCH_INFO[arch].debian for arch in ARCHES] == ["amd64", "i386", "arm64"]
    assert ARCH_INFO["aarch64"].qemu_package == "qemu-system-arm"
    with pytest.raises(UserError, match="'riscv64' is not one bungalow runs; use x86_64, i386"):
        check_arch("riscv64")


def test_only_the_hosts_own_architecture_runs_natively() -> None:
    assert runs_natively("x86_64", "x86_64") and runs_natively("i386", "x86_64")
    assert not runs_natively("aarch64", "x86_64")
    assert runs_natively("aarch64", "aarch64") and not runs_natively("x86_64", "aarch64")


def test_a_missing_emulator_names_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATH with only the x86 emulator on it: the host of someone who never installed ARM."""
    (tmp_path / "qemu-system-x86_64").symlink_to("/usr/bin/qemu-system-x86_64")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert emulator_missing("x86_64") is None and emulator_missing("i386") is None
    assert emulator_missing("aarch64") == (
        "aarch64 guests run under qemu-system-aarch64, which is not installed; install the "
        "Debian package qemu-system-arm (apt-get install qemu-system-arm)."
    )


def test_binfmt_is_read_from_the_handler_file(tmp_path: Path) -> None:
    assert not binfmt_registered("aarch64", tmp_path, host="x86_64")
    (tmp_path / "qemu-aarch64").write_text("disabled\ninterpreter /usr/libexec/x\n")
    assert not binfmt_registered("aarch64", tmp_path, host="x86_64")
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/x\n")
    assert binfmt_registered("aarch64", tmp_path, host="x86_64")
    # i386 programs need no handler on an x86_64 host.
    assert binfmt_registered("i386", tmp_path / "none", host="x86_64")


def test_scripts_install_registered_the_aarch64_handler() -> None:
    assert binfmt_registered("aarch64")
