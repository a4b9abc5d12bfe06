"""A VM's firmware and TPM: what it may have, its files, and how they travel.

A UEFI VM keeps its own copy of the firmware's variable store (``efivars.fd``, its
boot entries and Secure Boot keys), and a VM with a TPM its swtpm state (``tpm/``),
both in its VM directory beside its disk. They are made when the VM is (from the
image's or the snapshot's copy, else the firmware's blank template and an empty
TPM), kept across stops and starts, and copied into every snapshot and back, so a
clone, a restore, a wake or a restore-deleted boots with the same variables and
TPM. An installed UEFI guest that falls back to the EFI shell after a restart,
because its boot entry was lost with the variable store, is the failure this
avoids (UTM#2503, xen-orchestra#6054).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bungalow.daemon.state.records import SnapshotRecord, VmRecord
from bungalow.errors import UserError
from bungalow.host.swtpm import find_swtpm
from bungalow.images.store import Image
from bungalow.qemu.argv import RunFiles
from bungalow.qemu.firmware import VARS_FILE, FlashPair, resolve

TPM_DIR = "tpm"
#: swtpm's file of a TPM 2.0's permanent state, inside its state directory.
TPM_STATE = "tpm2-00.permall"
#: The files a snapshot of a VM with UEFI firmware or a TPM holds besides its disk.
SNAPSHOT_FILES = (VARS_FILE, f"{TPM_DIR}/{TPM_STATE}")
_BEFORE_RESTORE = ".before-restore"


def check_arch(asked: str | None, tpm: bool, image: Image) -> None:
    """UserError for firmware or a TPM ``image``'s architecture cannot have, said in terms of
    what was asked: an aarch64 guest boots its kernel directly on QEMU's virt machine (no
    firmware to choose, no TPM), and the OVMF installed here (Debian's ``ovmf``) is x86_64's
    only, which cannot start the ia32 EFI stub of Debian's i386 (686) kernel or any other
    32-bit EFI loader: the VM would sit at the UEFI shell."""
    shown = image.name or image.short_id
    if image.arch == "aarch64" and ((asked or "bios") != "bios" or tpm):
        given = [f"--firmware {asked}"] if (asked or "bios") != "bios" else []
        given += ["--tpm"] if tpm else []
        raise UserError(
            f"The image {shown} is aarch64, whose guest boots its kernel directly on QEMU's "
            f"virt machine and takes no --firmware or --tpm; drop {' and '.join(given)}."
        )
    if image.arch == "i386" and (asked or image.firmware) != "bios":
        raise UserError(
            f"The image {shown} is i386, and the OVMF here is x86_64 only: it cannot start "
            "the 32-bit (ia32) EFI stub of Debian's 686 kernel, so the VM would sit at the "
            "UEFI shell; use --firmware bios."
        )


def chosen(asked: str | None, tpm: bool, profile: str, image: Image) -> str:
    """The firmware of a new VM: ``asked``, else the image's. UserError for what cannot be:
    firmware or a TPM on the micro profile, a firmware or swtpm not installed."""
    firmware = asked or image.firmware
    if profile == "micro" and (firmware != "bios" or tpm):
        what = "a TPM" if firmware == "bios" else f"{firmware} firmware"
        raise UserError(
            f"The micro profile boots its kernel directly and cannot have {what}; add --profile pc."
        )
    if firmware != "bios" and image.kind == "linux" and efi_kernel(image) is None:
        raise UserError(
            f"The image {image.name} was built before bungalow kept its kernel's EFI stub "
            "(vmlinuz), and OVMF cannot load the decompressed vmlinux it boots directly; "
            f"rebuild it (`bungalow image build {image.name} --force`), or use --firmware bios."
        )
    if tpm and image.kind == "linux" and firmware == "bios":
        raise UserError(
            f"The image {image.name} boots its kernel and initramfs directly, and under SeaBIOS "
            "on QEMU 7.2 a TPM's event log pushes the ACPI tables below the room QEMU keeps "
            "for them, where that initramfs lands (the guest would lose ACPI and see no TPM); "
            "add --firmware uefi, whose loader places the initramfs itself."
        )
    resolve(firmware)
    if tpm:
        find_swtpm()
    return firmware


def efi_kernel(image: Image) -> Path | None:
    """The kernel OVMF boots for ``image``: a bzImage with an EFI stub, if the image has one
    (a ``vmlinux`` is the PVH ELF only SeaBIOS's loader takes)."""
    if image.efi_kernel is not None:
        return image.efi_kernel
    if image.kernel is not None and image.kernel.name != "vmlinux":
        return image.kernel
    return None


def spec_fields(vm: VmRecord, vm_dir: Path, run_dir: Path) -> dict[str, Any]:
    """The MachineSpec fields of ``vm``'s firmware and TPM (UserError if no longer installed)."""
    pair = resolve(vm.firmware)
    fields: dict[str, Any] = {}
    if pair is not None:
        fields.update(firmware=pair, vars_file=vm_dir / VARS_FILE)
    if vm.tpm:
        fields.update(tpm_socket=RunFiles(run_dir).swtpm_socket, tpm_state=vm_dir / TPM_DIR)
    return fields


def provide(vm_dir: Path, vm: VmRecord, origin: Path | None) -> None:
    """Make a new VM's variable store and TPM state: ``origin``'s (an image's or a snapshot's
    directory) where it has them, else (and for ``origin`` None: an installer VM's blank
    disk) a blank copy of the firmware's template and an empty TPM. Blocks: call it in a
    thread."""
    pair: FlashPair | None = resolve(vm.firmware)
    if pair is not None:
        kept = origin / VARS_FILE if origin is not None else None
        template = kept if kept is not None and kept.is_file() else pair.vars_template
        shutil.copyfile(template, vm_dir / VARS_FILE)
        os.chmod(vm_dir / VARS_FILE, 0o600)
    if vm.tpm:
        (vm_dir / TPM_DIR).mkdir(mode=0o700, exist_ok=True)
        kept = origin / TPM_DIR / TPM_STATE if origin is not None else None
        if kept is not None and kept.is_file():
            shutil.copyfile(kept, vm_dir / TPM_DIR / TPM_STATE)


def capture(vm_dir: Path, target: Path) -> tuple[str, ...]:
    """Copy the VM's variable store and TPM state (those it has) into the snapshot directory
    ``target``; the names copied, relative to it. Blocks: call it in a thread."""
    copied = []
    for name in SNAPSHOT_FILES:
        source = vm_dir / name
        if source.is_file():
            (target / name).parent.mkdir(mode=0o700, exist_ok=True)
            shutil.copyfile(source, target / name)
            copied.append(name)
    return tuple(copied)


def present(directory: Path) -> tuple[str, ...]:
    """Which of the variable store and TPM state files a snapshot directory holds."""
    return tuple(name for name in SNAPSHOT_FILES if (directory / name).is_file())


@contextlib.contextmanager
def swapped_in(snapshot: SnapshotRecord, directory: Path, vm_dir: Path) -> Iterator[None]:
    """Put ``snapshot``'s variable store and TPM state (in ``directory``) in place of the
    VM's for the block; if the block fails, the VM's own come back. Blocks (file copies)."""
    names = [name for name in SNAPSHOT_FILES if name in snapshot.digests]
    kept: list[Callable[[], None]] = []
    try:
        for name in names:
            current, staged = vm_dir / name, vm_dir / (name + ".restore")
            current.parent.mkdir(mode=0o700, exist_ok=True)
            shutil.copyfile(directory / name, staged)
            if current.exists():
                before = vm_dir / (name + _BEFORE_RESTORE)
                os.replace(current, before)
                kept.append(lambda c=current, b=before: os.replace(b, c))  # type: ignore[misc]
            os.replace(staged, current)
        yield
    except BaseException:
        for undo in reversed(kept):
            with contextlib.suppress(OSError):
                undo()
        raise
    finally:
        for name in names:
            (vm_dir / (name + ".restore")).unlink(missing_ok=True)
            (vm_dir / (name + _BEFORE_RESTORE)).unlink(missing_ok=True)


def check_firmware_log(vm: VmRecord) -> None:
    """UserError unless ``vm`` writes a firmware debug log (``logs --firmware``): micro VMs
    boot their kernel with no firmware, and Debian's OVMF is a release build that writes
    nothing to the debug console; SeaBIOS logs its "Booting from ..." lines there."""
    if vm.profile != "pc":
        raise UserError(
            f"The VM {vm.name} is a micro VM: it boots its kernel directly, with no firmware "
            f"and no firmware log; its console log is `bungalow logs {vm.name}`."
        )
    if vm.firmware != "bios":
        raise UserError(
            f"The VM {vm.name} boots OVMF ({vm.firmware}), whose Debian build writes no debug "
            f"log; see its screen (`bungalow screenshot {vm.name} FILE.png`) or its console "
            f"log (`bungalow logs {vm.name}`)."
        )
