"""Disk bandwidth and IOPS limits with bursts, through QEMU's block throttling over QMP.

QEMU meters a drive's requests with leaky buckets: ``iops``/``bps`` are the
sustained rates, ``iops_max``/``bps_max`` what a burst may reach, for up to
``*_max_length`` seconds. Limits apply to the running QEMU at once and are set
again by the daemon whenever a VM starts, so they hold across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

from bungalow.errors import UserError
from bungalow.qemu.monitor import Monitor

#: The block backend name every VM's disk has (``-drive id=disk0`` in argv.py).
DISK = "disk0"
#: How long a burst may last, in seconds.
BURST_SECONDS = 10
#: The largest value QEMU's throttling takes for a rate, and for a burst rate times its
#: length (THROTTLE_VALUE_MAX in QEMU's include/qemu/throttle.h: 10^15).
THROTTLE_VALUE_MAX = 10**15


@dataclass(frozen=True)
class DiskLimits:
    """Total (read + write) limits; None means unlimited."""

    iops: int | None = None
    bps: int | None = None
    iops_burst: int | None = None
    bps_burst: int | None = None

    def __post_init__(self) -> None:
        for what, value in (("IOPS", self.iops), ("bandwidth", self.bps)):
            if value is not None and value < 1:
                raise UserError(f"A disk {what} limit must be positive; leave it out for none.")
        for what, base, burst in (
            ("IOPS", self.iops, self.iops_burst),
            ("bandwidth", self.bps, self.bps_burst),
        ):
            if burst is not None and (base is None or burst < base):
                raise UserError(
                    f"A disk {what} burst needs a {what} limit and must be at least that limit."
                )
            if (base or 0) > THROTTLE_VALUE_MAX or (burst or 0) * BURST_SECONDS > (
                THROTTLE_VALUE_MAX
            ):
                raise UserError(
                    f"A disk {what} limit or burst that high is more than QEMU can meter (a "
                    f"burst at most {THROTTLE_VALUE_MAX // BURST_SECONDS}, a limit at most "
                    f"{THROTTLE_VALUE_MAX}); give a smaller one, or leave it out for none."
                )

    def qmp_arguments(self, device: str = DISK) -> dict[str, object]:
        arguments: dict[str, object] = {
            "device": device,
            "iops": self.iops or 0,
            "iops_rd": 0,
            "iops_wr": 0,
            "bps": self.bps or 0,
            "bps_rd": 0,
            "bps_wr": 0,
        }
        if self.iops_burst:
            arguments.update(iops_max=self.iops_burst, iops_max_length=BURST_SECONDS)
        if self.bps_burst:
            arguments.update(bps_max=self.bps_burst, bps_max_length=BURST_SECONDS)
        return arguments


async def apply_disk_limits(monitor: Monitor, limits: DiskLimits) -> None:
    """Set (or with all None, lift) the limits of the VM's disk, effective immediately."""
    await monitor.execute("block_set_io_throttle", limits.qmp_arguments())
