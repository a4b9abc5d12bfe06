"""What the daemon learns about this host once, at start: the accelerator probe and QEMU.

Both are blocking (the KVM probe runs a child process for up to 5 s, QEMU's
version is a subprocess), so the daemon's entry point gathers them before its
event loop starts and hands the result to the services that need it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bungalow.arch import ARCH_INFO, ARCHES, Arch, binfmt_registered, emulator_missing
from bungalow.qemu.accel import AccelChoice, HostProbe, choose_accelerator, for_arch, host_probe
from bungalow.qemu.process import qemu_version


@dataclass(frozen=True)
class ArchSupport:
    """Whether this host runs guests of one architecture, and how."""

    arch: Arch
    qemu_binary: str
    installed: bool
    package: str  # the Debian package that provides qemu_binary
    accel: AccelChoice
    binfmt: bool  # its programs run here (natively or through qemu-user-static)


@dataclass(frozen=True)
class HostFacts:
    """The accelerator probe's findings and QEMU's version line."""

    probe: HostProbe
    qemu_version: str

    @classmethod
    def gather(cls) -> HostFacts:
        """Probe now (blocks up to about 5 s; never call it on the event loop)."""
        return cls(probe=host_probe(), qemu_version=qemu_version())

    def choice(self, override: str | None = None) -> AccelChoice:
        """KVM when it runs guest kernel code at hardware speed, else TCG; or ``override``."""
        return choose_accelerator(self.probe, override)

    def accel(self, override: str | None = None) -> str:
        return self.choice(override).name

    def architectures(self) -> list[ArchSupport]:
        """Each architecture of bungalow/arch.py as this host runs it (read now: a package
        installed while the daemon runs shows at once)."""
        host = self.choice()
        return [
            ArchSupport(
                arch=arch,
                qemu_binary=ARCH_INFO[arch].qemu_binary,
                installed=emulator_missing(arch) is None,
                package=ARCH_INFO[arch].qemu_package,
                accel=for_arch(host, arch),
                binfmt=binfmt_registered(arch),
            )
            for arch in ARCHES
        ]
