"""A UEFI build as a VM is given it: two pflash images (QEMU's ``cfi.pflash01``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: What ``--firmware`` names: SeaBIOS (QEMU's default), OVMF, OVMF with Secure Boot on.
FirmwareName = Literal["bios", "uefi", "uefi-secure"]
FIRMWARES: tuple[FirmwareName, ...] = ("bios", "uefi", "uefi-secure")
#: Where each VM keeps its own copy of the variable store, in its VM directory.
VARS_FILE = "efivars.fd"


@dataclass(frozen=True)
class FlashPair:
    """The code (pflash unit 0, read-only) and the variable store template (unit 1 is a
    per-VM copy of it) of one UEFI build, as a descriptor names them.

    ``secure_boot``: the build enforces Secure Boot from SMM, so the machine needs
    ``smm=on`` and pflash that only SMM may write (``cfi.pflash01``'s ``secure``).
    """

    name: FirmwareName
    code: Path
    vars_template: Path
    secure_boot: bool
    descriptor: Path


def pflash_args(pair: FlashPair, vars_file: Path) -> list[str]:
    """QEMU options giving the machine ``pair``'s code and the VM's own ``vars_file``.

    The variable store keeps its one descriptor across a migration, as the disk
    does (``file.auto-read-only=off``: a confined QEMU cannot open it again).
    """
    args = [
        "-drive",
        f"if=pflash,unit=0,format=raw,readonly=on,file={pair.code.absolute()}",
        "-drive",
        f"if=pflash,unit=1,format=raw,file={vars_file.absolute()},file.auto-read-only=off",
    ]
    if pair.secure_boot:
        args += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    return args
