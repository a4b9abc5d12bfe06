"""The machine QEMU emulates for each guest architecture, and what differs between them.

x86_64 and i386 guests share the x86 machines (``microvm`` for the micro profile,
``q35`` for pc) under qemu-system-x86_64; an aarch64 guest gets ``virt`` under
qemu-system-aarch64 (docs/architecture.md, "Other architectures").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bungalow.arch import DEFAULT_ARCH, Arch


@dataclass(frozen=True)
class Board:
    """What QEMU emulates for one guest architecture on the micro profile (and pc, if any)."""

    micro: str  # -M value of the micro profile
    pc: str | None  # -M value of the pc profile; None where there is none
    console: str  # the kernel's name for the first serial port
    #: QEMU's name for the machine's RAM on each profile, which a migration stream names.
    micro_ram: str
    pc_ram: str | None
    #: -cpu under TCG. On aarch64, pauth-impdef swaps the architected QARMA pointer
    #: authentication (costly to emulate) for QEMU's own cheap hash: the guest cannot tell.
    tcg_cpu: str = "max"
    #: Whether the guest kernel takes the TSC hint (tsc_early_khz: x86 only).
    tsc_hint: bool = True


_X86 = Board("microvm,acpi=on", "q35", "ttyS0", "microvm.ram", "pc.ram")
#: One board per architecture (bungalow/arch.py). gic-version=3 is the GIC TCG emulates
#: for any number of vCPUs (a GICv2 stops at 8).
BOARDS: dict[Arch, Board] = {
    "x86_64": _X86,
    "i386": _X86,
    "aarch64": Board(
        "virt,gic-version=3", None, "ttyAMA0", "mach-virt.ram", None, "max,pauth-impdef=on", False
    ),
}


def ram_id(profile: Literal["micro", "pc"], arch: Arch = DEFAULT_ARCH) -> str:
    """The name QEMU gives the machine's RAM, which a migration stream refers to."""
    board = BOARDS[arch]
    return board.micro_ram if profile == "micro" else board.pc_ram or board.micro_ram
