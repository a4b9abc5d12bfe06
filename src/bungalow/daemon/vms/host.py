"""What the daemon learns about this host once, at start: the accelerator probe and QEMU.

Both are blocking (the KVM probe runs a child process for up to 5 s, QEMU's
version is a subprocess), so the daemon's entry point gathers them before its
event loop starts and hands the result to the services that need it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bungalow.qemu.accel import AccelChoice, HostProbe, choose_accelerator, host_probe
from bungalow.qemu.process import qemu_version


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
