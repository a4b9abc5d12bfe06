"""Firmware from QEMU's descriptors, and edk2 variable stores: pure logic, real files.

The descriptors in tests/qemu/firmware are Debian 12's ``ovmf`` package's, copied
as they are; the flash images they name are the installed ones (scripts/install).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bungalow.errors import UserError
from bungalow.qemu.firmware import FlashPair, check_vars_for, offered, resolve
from bungalow.qemu.firmware.descriptors import in_precedence, load, parse
from bungalow.qemu.firmware.flash import pflash_args
from bungalow.qemu.firmware.varstore import check_matches, variables

FIXTURES = Path(__file__).parent / "firmware"
OVMF = Path("/usr/share/OVMF")
INSTALLED = Path("/usr/share/qemu/firmware")


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A distribution directory holding Debian's descriptors and an empty admin one."""
    usr, etc = tmp_path / "usr", tmp_path / "etc"
    shutil.copytree(FIXTURES, usr)
    etc.mkdir()
    return usr, etc


def test_debian_descriptors_parse_as_the_package_says() -> None:
    enrolled = parse(FIXTURES / "40-edk2-x86_64-secure-enrolled.json")
    assert enrolled.interfaces == ("uefi",)
    assert enrolled.device == "flash"
    assert enrolled.code == OVMF / "OVMF_CODE_4M.ms.fd"
    assert enrolled.nvram_template == OVMF / "OVMF_VARS_4M.ms.fd"
    assert {"secure-boot", "enrolled-keys", "requires-smm"} <= enrolled.features
    assert enrolled.runs_on("x86_64", "pc-q35-7.2")
    assert not enrolled.runs_on("x86_64", "pc-i440fx-7.2")
    assert not enrolled.runs_on("x86_64", "microvm")


def test_uefi_is_the_4m_pair_without_secure_boot(dirs: tuple[Path, Path]) -> None:
    pair = resolve("uefi", dirs=dirs)
    assert pair == FlashPair(
        name="uefi",
        code=OVMF / "OVMF_CODE_4M.fd",
        vars_template=OVMF / "OVMF_VARS_4M.fd",
        secure_boot=False,
        descriptor=dirs[0] / "60-edk2-x86_64.json",
    )


def test_uefi_secure_is_the_enrolled_pair_and_needs_smm(dirs: tuple[Path, Path]) -> None:
    pair = resolve("uefi-secure", dirs=dirs)
    assert pair is not None
    assert pair.code.resolve() == OVMF / "OVMF_CODE_4M.secboot.fd"
    assert pair.vars_template == OVMF / "OVMF_VARS_4M.ms.fd"
    assert pair.secure_boot
    args = pflash_args(pair, Path("/vm/efivars.fd"))
    assert "driver=cfi.pflash01,property=secure,value=on" in args
    assert any("unit=0" in a and "readonly=on" in a for a in args)
    assert any("unit=1" in a and "file=/vm/efivars.fd" in a for a in args)


def test_bios_needs_no_flash() -> None:
    assert resolve("bios") is None


def test_the_installed_descriptors_give_the_same_choice() -> None:
    installed, fixtures = resolve("uefi"), resolve("uefi", dirs=(FIXTURES,))
    assert installed is not None and fixtures is not None
    assert (installed.code, installed.vars_template) == (fixtures.code, fixtures.vars_template)
    assert installed.descriptor == INSTALLED / "60-edk2-x86_64.json"
    firmwares = {f.name: f for f in offered()}
    assert firmwares["uefi"].installed and firmwares["uefi-secure"].installed
    assert firmwares["uefi"].vars_template == OVMF / "OVMF_VARS_4M.fd"


def test_a_file_in_etc_replaces_the_one_of_the_same_name(dirs: tuple[Path, Path]) -> None:
    usr, etc = dirs
    mine = json.loads((usr / "60-edk2-x86_64.json").read_text())
    mine["mapping"]["executable"]["filename"] = str(OVMF / "OVMF_CODE_4M.secboot.fd")
    (etc / "60-edk2-x86_64.json").write_text(json.dumps(mine))
    assert in_precedence(dirs)[-1] == etc / "60-edk2-x86_64.json"
    pair = resolve("uefi", dirs=dirs)
    assert pair is not None and pair.code == OVMF / "OVMF_CODE_4M.secboot.fd"


def test_an_empty_file_in_etc_hides_a_descriptor(dirs: tuple[Path, Path]) -> None:
    _usr, etc = dirs
    (etc / "60-edk2-x86_64.json").write_text("")
    assert [p.name for p in in_precedence(dirs)] == [
        "40-edk2-x86_64-secure-enrolled.json",
        "50-edk2-x86_64-secure.json",
    ]
    with pytest.raises(UserError, match="package ovmf"):
        resolve("uefi", dirs=dirs)


def test_the_first_file_by_name_wins_across_directories(dirs: tuple[Path, Path]) -> None:
    usr, etc = dirs
    mine = json.loads((usr / "60-edk2-x86_64.json").read_text())
    mine["description"] = "the admin's own"
    (etc / "10-mine.json").write_text(json.dumps(mine))
    assert next(d.description for d in load(dirs)) == "the admin's own"
    pair = resolve("uefi", dirs=dirs)
    assert pair is not None and pair.descriptor == etc / "10-mine.json"


def test_a_broken_descriptor_is_skipped(dirs: tuple[Path, Path]) -> None:
    (dirs[1] / "05-broken.json").write_text("{not json")
    (dirs[1] / "06-shapeless.json").write_text('{"mapping": 3}')
    assert resolve("uefi", dirs=dirs) is not None


def test_without_descriptors_the_package_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match=r"not installed on this host; install the Debian package ovmf"
    ):
        resolve("uefi", dirs=(tmp_path,))


def test_a_descriptor_whose_files_are_missing_counts_as_not_installed(
    dirs: tuple[Path, Path],
) -> None:
    usr, _ = dirs
    for path in usr.iterdir():
        path.write_text(path.read_text().replace("/usr/share/OVMF/", "/nonexistent/OVMF/"))
    with pytest.raises(UserError, match="apt-get install ovmf"):
        resolve("uefi-secure", dirs=dirs)


def test_the_2m_pair_is_never_chosen(dirs: tuple[Path, Path]) -> None:
    usr, _ = dirs
    for path in usr.iterdir():
        path.write_text(path.read_text().replace("_4M", ""))
    with pytest.raises(UserError, match="not installed"):
        resolve("uefi", dirs=dirs)


def test_a_machine_type_without_uefi_is_refused(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(UserError, match="machine type microvm cannot have uefi firmware"):
        resolve("uefi", machine="microvm", dirs=dirs)


def test_an_unknown_firmware_is_refused() -> None:
    with pytest.raises(UserError, match="use bios, uefi or uefi-secure"):
        resolve("coreboot")


def test_a_vars_file_of_the_same_firmware_is_taken(tmp_path: Path) -> None:
    mine = tmp_path / "vars.fd"
    shutil.copy(OVMF / "OVMF_VARS_4M.ms.fd", mine)
    check_matches(mine, OVMF / "OVMF_VARS_4M.fd")


def test_a_vars_file_from_another_firmware_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="a vars file from another firmware"):
        check_matches(OVMF / "OVMF_VARS.fd", OVMF / "OVMF_VARS_4M.fd")
    other = tmp_path / "same-size.fd"
    other.write_bytes(b"\0" * (OVMF / "OVMF_VARS_4M.fd").stat().st_size)
    with pytest.raises(UserError, match="not a UEFI variable store"):
        check_matches(other, OVMF / "OVMF_VARS_4M.fd")


def test_the_enrolled_template_holds_microsofts_keys() -> None:
    enrolled = variables(OVMF / "OVMF_VARS_4M.ms.fd")
    assert {"PK", "KEK", "db", "dbx"} <= set(enrolled)
    assert enrolled["SecureBootEnable"].data == b"\x01"
    assert "PK" not in variables(OVMF / "OVMF_VARS_4M.fd")


def test_an_imports_vars_file_must_be_its_firmwares(tmp_path: Path) -> None:
    check_vars_for("uefi", None)
    check_vars_for("uefi-secure", OVMF / "OVMF_VARS_4M.ms.fd")
    with pytest.raises(UserError, match="SeaBIOS has none; add --firmware uefi"):
        check_vars_for("bios", OVMF / "OVMF_VARS_4M.fd")
    with pytest.raises(UserError, match="a vars file from another firmware"):
        check_vars_for("uefi", OVMF / "OVMF_VARS.fd")
    with pytest.raises(UserError, match="There is no vars file"):
        check_vars_for("uefi", tmp_path / "missing.fd")
