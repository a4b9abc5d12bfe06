"""Which firmware a VM gets for ``--firmware``, chosen from the descriptors installed.

- ``bios``: SeaBIOS, QEMU's default; nothing to choose (``qemu-system-x86`` ships it).
- ``uefi``: the first descriptor with interface ``uefi`` on flash, for the machine,
  without ``secure-boot``, whose code and vars template fill a 4 MiB flash (Debian's
  ``OVMF_CODE_4M.fd`` + ``OVMF_VARS_4M.fd``: the 2 MiB build's 128 KiB store is too
  small for Secure Boot's keys, and the two stores do not mix).
- ``uefi-secure``: the same with ``secure-boot`` and ``enrolled-keys`` (Debian's
  ``OVMF_CODE_4M.secboot.fd`` + ``OVMF_VARS_4M.ms.fd``, Microsoft's keys enrolled),
  which needs SMM (``requires-smm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bungalow.errors import UserError
from bungalow.qemu.firmware.descriptors import SEARCH_DIRS, Descriptor, load
from bungalow.qemu.firmware.flash import FIRMWARES, FirmwareName, FlashPair
from bungalow.qemu.firmware.varstore import check_matches

ARCHITECTURE = "x86_64"
#: The pc profile's machine type as descriptors name it (QEMU's ``q35`` is its newest version).
Q35 = "pc-q35-7.2"
FLASH_4M = 4 << 20
#: The Debian package that brings each firmware.
PACKAGES: dict[FirmwareName, str] = {"bios": "seabios", "uefi": "ovmf", "uefi-secure": "ovmf"}
SEABIOS = Path("/usr/share/seabios/bios-256k.bin")


def fits(name: FirmwareName, descriptor: Descriptor) -> bool:
    """Whether ``descriptor`` is what ``--firmware name`` asks for (files not checked)."""
    features = descriptor.features
    if (
        name == "bios"
        or "uefi" not in descriptor.interfaces
        or descriptor.device != "flash"
        or descriptor.nvram_template is None
    ):
        return False
    if name == "uefi-secure":
        return {"secure-boot", "enrolled-keys"} <= features
    return "secure-boot" not in features and "requires-smm" not in features


def _installed_4m(descriptor: Descriptor) -> bool:
    code, template = descriptor.code, descriptor.nvram_template
    if code is None or template is None or not code.is_file() or not template.is_file():
        return False
    return code.stat().st_size + template.stat().st_size == FLASH_4M


def _pair(name: FirmwareName, descriptor: Descriptor) -> FlashPair:
    assert descriptor.code is not None and descriptor.nvram_template is not None
    return FlashPair(
        name=name,
        code=descriptor.code,
        vars_template=descriptor.nvram_template,
        secure_boot="requires-smm" in descriptor.features,
        descriptor=descriptor.path,
    )


def resolve(
    name: str,
    *,
    machine: str = Q35,
    architecture: str = ARCHITECTURE,
    dirs: Sequence[Path] = SEARCH_DIRS,
) -> FlashPair | None:
    """The flash pair for ``--firmware name`` on ``machine`` (None for SeaBIOS).

    UserError with a sentence: an unknown name, no descriptor for the machine type
    (it cannot have UEFI), or none whose files are installed (install the package).
    """
    if name not in FIRMWARES:
        raise UserError(f"The firmware {name!r} is not known; use bios, uefi or uefi-secure.")
    firmware: FirmwareName = name
    if firmware == "bios":
        return None
    wanted = [d for d in load(dirs) if fits(firmware, d)]
    if wanted and not any(d.runs_on(architecture, machine) for d in wanted):
        raise UserError(
            f"The machine type {machine} cannot have {firmware} firmware (no installed "
            f"build runs on it); use the pc profile (q35), or --firmware bios."
        )
    for descriptor in wanted:
        if descriptor.runs_on(architecture, machine) and _installed_4m(descriptor):
            return _pair(firmware, descriptor)
    raise UserError(
        f"The {firmware} firmware is not installed on this host; install the Debian "
        f"package {PACKAGES[firmware]} (apt-get install {PACKAGES[firmware]}), then try again."
    )


def check_vars_for(firmware: str, vars_file: Path | None) -> None:
    """UserError unless ``firmware`` is installed and ``vars_file`` (if any) is one of its
    variable stores (an import's ``--vars``)."""
    pair = resolve(firmware)
    if vars_file is None:
        return
    if pair is None:
        raise UserError(
            "A vars file is UEFI's variable store and SeaBIOS has none; add --firmware uefi "
            "(or uefi-secure), or leave out --vars."
        )
    if not vars_file.is_file():
        raise UserError(f"There is no vars file {vars_file}; check the path.")
    check_matches(vars_file, pair.vars_template)


@dataclass(frozen=True)
class Offered:
    """One firmware as ``host info`` lists it."""

    name: FirmwareName
    installed: bool
    code: Path | None
    vars_template: Path | None
    package: str


def offered(dirs: Sequence[Path] = SEARCH_DIRS) -> list[Offered]:
    """Every ``--firmware`` choice on this host: its files if installed, else its package."""
    found = []
    for name in FIRMWARES:
        if name == "bios":
            there = SEABIOS.is_file()
            found.append(Offered(name, there, SEABIOS if there else None, None, PACKAGES[name]))
            continue
        try:
            pair = resolve(name, dirs=dirs)
        except UserError:
            pair = None
        code = pair.code if pair else None
        template = pair.vars_template if pair else None
        found.append(Offered(name, pair is not None, code, template, PACKAGES[name]))
    return found
