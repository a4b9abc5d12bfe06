"""A VM's firmware choice, its vars file and TPM state on disk, and how they travel: unit tests
on real files (the OVMF templates installed by scripts/install)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import Purpose, SnapshotRecord, VmRecord
from bungalow.daemon.vms import firmware
from bungalow.daemon.vms.plan import plan_vm
from bungalow.daemon.vms.requests import CreateRequest
from bungalow.errors import UserError
from bungalow.host.swtpm import find_swtpm
from bungalow.images.store import Image
from bungalow.qemu.argv import MachineSpec, build_argv
from bungalow.qemu.firmware import resolve

OVMF = Path("/usr/share/OVMF")


def image(tmp_path: Path, kind: str = "disk", **changes: object) -> Image:
    linux = kind == "linux"
    values: dict[str, object] = {
        "id": "ab" * 32, "name": "img", "kind": kind, "disk": tmp_path / "disk.qcow2",
        "kernel": tmp_path / "vmlinux" if linux else None,
        "modules": tmp_path / "modules" if linux else None, "size": 1, "virtual_size": 1 << 30,
        "created": datetime.now(), "os_release": "", "kernel_version": None, "source": "",
    }  # fmt: skip
    values.update(changes)
    return Image(**values)  # type: ignore[arg-type]


def vm(**changes: object) -> VmRecord:
    return VmRecord(
        id="v1", name="v1", state=VmState.CREATED, image_id="i", image_name="img",
        profile="pc", cpus=1, memory=256 << 20, disk_size=1 << 30,
    ).with_changes(**changes)  # fmt: skip


def test_a_disk_image_brings_its_firmware_and_tpm_picks_the_pc_profile(tmp_path: Path) -> None:
    planned = plan_vm(CreateRequest(name="a", image="img"), image(tmp_path, firmware="uefi"))
    assert (planned.profile, planned.firmware, planned.tpm) == ("pc", "uefi", False)
    asked = plan_vm(
        CreateRequest(name="a", firmware="uefi-secure", tpm=True), image(tmp_path, firmware="uefi")
    )
    assert (asked.firmware, asked.tpm) == ("uefi-secure", True)
    linux = plan_vm(CreateRequest(name="a"), image(tmp_path, "linux"))
    assert (linux.profile, linux.firmware) == ("micro", "bios")
    efi = image(tmp_path, "linux", efi_kernel=tmp_path / "vmlinuz")
    booted = plan_vm(CreateRequest(name="a", firmware="uefi", tpm=True), efi)
    assert (booted.profile, booted.firmware, booted.tpm) == ("pc", "uefi", True)


@pytest.mark.parametrize(
    ("request_", "kind", "says"),
    [
        (CreateRequest(name="a", firmware="uefi", profile="micro"), "linux", "cannot have uefi"),
        (CreateRequest(name="a", tpm=True, profile="micro"), "linux", "cannot have a TPM"),
        (CreateRequest(name="a", firmware="uefi"), "linux", "before bungalow kept its kernel"),
        (CreateRequest(name="a", tpm=True), "linux", "add --firmware uefi"),
        (CreateRequest(name="a", firmware="coreboot"), "disk", "use bios, uefi or uefi-secure"),
    ],
)
def test_what_cannot_be_is_refused_with_a_sentence(
    tmp_path: Path, request_: CreateRequest, kind: str, says: str
) -> None:
    with pytest.raises(UserError, match=says):
        plan_vm(request_, image(tmp_path, kind))


@pytest.mark.parametrize(
    ("arch", "request_", "says"),
    [
        ("aarch64", CreateRequest(name="a", firmware="uefi"), "takes no --firmware or --tpm; "
         "drop --firmware uefi."),
        ("aarch64", CreateRequest(name="a", tpm=True), "drop --tpm."),
        ("i386", CreateRequest(name="a", firmware="uefi"), "x86_64 only.*use --firmware bios"),
        ("i386", CreateRequest(name="a", firmware="uefi-secure"), "ia32"),
    ],
)  # fmt: skip
def test_firmware_a_guest_architecture_cannot_have_is_refused_as_asked(
    tmp_path: Path, arch: str, request_: CreateRequest, says: str
) -> None:
    efi = image(tmp_path, "linux", arch=arch, efi_kernel=tmp_path / "vmlinuz")
    with pytest.raises(UserError, match=says) as refused:
        plan_vm(request_, efi)
    assert "--profile" not in str(refused.value)
    assert plan_vm(CreateRequest(name="a"), efi).firmware == "bios"


def test_without_swtpm_a_tpm_is_refused_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="install the Debian packages swtpm and swtpm-tools"):
        find_swtpm()


def test_the_machine_gets_pflash_smm_and_a_crb_tpm(tmp_path: Path) -> None:
    pair = resolve("uefi-secure")
    assert pair is not None
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "disk.qcow2"), "8M"],
                   check=True)  # fmt: skip
    spec = MachineSpec(
        name="v1", cpus=1, memory=256 << 20, profile="pc", disk=tmp_path / "disk.qcow2",
        accel="tcg", run_dir=tmp_path / "run", agent=False, firmware=pair,
        vars_file=tmp_path / "efivars.fd", tpm_socket=tmp_path / "run" / "swtpm.sock",
        tpm_state=tmp_path / "tpm",
    )  # fmt: skip
    argv = " ".join(build_argv(spec, "qemu-system-x86_64"))
    assert "-M q35,smm=on" in argv
    assert f"unit=0,format=raw,readonly=on,file={pair.code}" in argv
    assert f"unit=1,format=raw,file={tmp_path / 'efivars.fd'}" in argv
    assert "-global driver=cfi.pflash01,property=secure,value=on" in argv
    assert "-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-crb,tpmdev=tpm0" in argv
    plain = dataclasses.replace(spec, firmware=None, vars_file=None, tpm_socket=None,
                                tpm_state=None)  # fmt: skip
    assert "if=pflash" not in " ".join(build_argv(plain, "qemu-system-x86_64"))
    with pytest.raises(UserError, match="micro profile"):
        dataclasses.replace(spec, profile="micro", kernel=tmp_path / "vmlinux")
    with pytest.raises(UserError, match="needs the VM's vars file"):
        dataclasses.replace(spec, vars_file=None)


def test_files_are_made_from_the_origin_else_the_template(tmp_path: Path) -> None:
    origin, fresh, copied = tmp_path / "origin", tmp_path / "fresh", tmp_path / "copied"
    for directory in (origin, fresh, copied):
        directory.mkdir()
    record = vm(firmware="uefi", tpm=True)
    firmware.provide(fresh, record, origin)
    assert (fresh / "efivars.fd").read_bytes() == (OVMF / "OVMF_VARS_4M.fd").read_bytes()
    assert (fresh / "tpm").is_dir() and not any((fresh / "tpm").iterdir())
    shutil.copyfile(OVMF / "OVMF_VARS_4M.ms.fd", origin / "efivars.fd")
    (origin / "tpm").mkdir()
    (origin / "tpm" / "tpm2-00.permall").write_bytes(b"tpm state")
    firmware.provide(copied, record, origin)
    assert (copied / "efivars.fd").read_bytes() == (origin / "efivars.fd").read_bytes()
    assert (copied / "tpm" / "tpm2-00.permall").read_bytes() == b"tpm state"
    bios = tmp_path / "bios"
    bios.mkdir()
    firmware.provide(bios, vm(), origin)
    assert list(bios.iterdir()) == []


def test_a_snapshot_takes_the_files_and_a_restore_puts_them_back_or_not_at_all(
    tmp_path: Path,
) -> None:
    vm_dir, snap = tmp_path / "vm", tmp_path / "snap"
    vm_dir.mkdir()
    snap.mkdir()
    (vm_dir / "efivars.fd").write_bytes(b"vars then")
    (vm_dir / "tpm").mkdir()
    (vm_dir / "tpm" / "tpm2-00.permall").write_bytes(b"tpm then")
    assert firmware.capture(vm_dir, snap) == ("efivars.fd", "tpm/tpm2-00.permall")
    assert firmware.present(snap) == ("efivars.fd", "tpm/tpm2-00.permall")
    (vm_dir / "efivars.fd").write_bytes(b"vars now")
    (vm_dir / "tpm" / "tpm2-00.permall").write_bytes(b"tpm now")
    record = SnapshotRecord(
        id="s", name="s", vm_id="v1", vm_name="v1", kind="disk", purpose=Purpose.USER,
        image_id="i", profile="pc", cpus=1, memory=1, disk_size=1, accel="tcg", qemu="q",
        digests={"disk.qcow2": "x", "efivars.fd": "y", "tpm/tpm2-00.permall": "z"}, size=0,
        firmware="uefi", tpm=True,
    )  # fmt: skip
    with pytest.raises(RuntimeError), firmware.swapped_in(record, snap, vm_dir):
        assert (vm_dir / "efivars.fd").read_bytes() == b"vars then"
        raise RuntimeError("the start failed")
    assert (vm_dir / "efivars.fd").read_bytes() == b"vars now"
    assert (vm_dir / "tpm" / "tpm2-00.permall").read_bytes() == b"tpm now"
    with firmware.swapped_in(record, snap, vm_dir):
        pass
    assert (vm_dir / "efivars.fd").read_bytes() == b"vars then"
    assert (vm_dir / "tpm" / "tpm2-00.permall").read_bytes() == b"tpm then"
    assert sorted(p.name for p in vm_dir.iterdir()) == ["efivars.fd", "tpm"]


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"profile": "micro"}, "boots its kernel directly, with no firmware and no firmware log"),
        ({"firmware": "uefi"}, "boots OVMF (uefi), whose Debian build writes no debug log"),
    ],
)
def test_a_firmware_log_is_seabios_alone(changes: dict[str, object], said: str) -> None:
    firmware.check_firmware_log(vm())  # SeaBIOS: its debug console is the log
    with pytest.raises(UserError, match=said.replace("(", r"\(").replace(")", r"\)")):
        firmware.check_firmware_log(vm(**changes))
