"""Firmware for pc VMs: SeaBIOS, or OVMF chosen from QEMU's firmware descriptors.

``descriptors`` reads the descriptor files in QEMU's precedence, ``choice``
turns ``--firmware bios|uefi|uefi-secure`` into the flash pair to use,
``flash`` holds that pair and its QEMU options, and ``varstore`` reads and
checks edk2 variable stores (each UEFI VM's own ``efivars.fd``).
"""

from bungalow.qemu.firmware.choice import PACKAGES, Offered, check_vars_for, offered, resolve
from bungalow.qemu.firmware.flash import FIRMWARES, VARS_FILE, FirmwareName, FlashPair

__all__ = [
    "FIRMWARES",
    "PACKAGES",
    "VARS_FILE",
    "FirmwareName",
    "FlashPair",
    "Offered",
    "check_vars_for",
    "offered",
    "resolve",
]
