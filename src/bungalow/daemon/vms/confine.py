"""Starting QEMU confined: its own unprivileged user, its run directory as its root.

Every QEMU the daemon starts (a booting VM, one resumed from a snapshot, the
converter a snapshot passes through) goes through :func:`launch_confined`.
Where the daemon is not root there is no one to drop to; QEMU then runs as the
daemon's own user, still inside its control group and seccomp sandbox.
"""

from __future__ import annotations

import dataclasses

from bungalow.host import jail
from bungalow.qemu.argv import MachineSpec
from bungalow.qemu.process import launch


def launch_confined(spec: MachineSpec) -> int:
    """Start QEMU for ``spec`` as a user of its own; returns its PID (blocking)."""
    if spec.runas is None and jail.available():
        identity = jail.allocate()
        spec = dataclasses.replace(spec, runas=(identity.uid, identity.gid))
    return launch(spec)
