"""The qemu layer: QEMU command lines, processes, QMP and the KVM-or-TCG choice.

It knows nothing of projects, quotas, SQLite or HTTP: the daemon gives it a
:class:`MachineSpec` and gets back a PID, a :class:`Monitor` and errors that are
already one sentence (:class:`bungalow.errors.QemuError` and friends).
"""

from bungalow.qemu.accel import (
    AccelChoice,
    accel_arg,
    host_tsc_khz,
    kvm_accel_arg,
    probe_accelerator,
    tcg_accel_arg,
)
from bungalow.qemu.argv import (
    MachineSpec,
    PortForward,
    RunFiles,
    build_argv,
    kernel_cmdline,
    random_mac,
)
from bungalow.qemu.disk import DiskIo, choose_disk_io
from bungalow.qemu.monitor import Event, Monitor
from bungalow.qemu.process import (
    become_subreaper,
    find_qemu,
    launch,
    pid_alive,
    read_pid,
    reap,
    terminate,
    wait_exit,
)

__all__ = [
    "AccelChoice",
    "DiskIo",
    "Event",
    "MachineSpec",
    "Monitor",
    "PortForward",
    "RunFiles",
    "accel_arg",
    "become_subreaper",
    "build_argv",
    "choose_disk_io",
    "find_qemu",
    "host_tsc_khz",
    "kernel_cmdline",
    "kvm_accel_arg",
    "launch",
    "pid_alive",
    "probe_accelerator",
    "random_mac",
    "read_pid",
    "reap",
    "tcg_accel_arg",
    "terminate",
    "wait_exit",
]
