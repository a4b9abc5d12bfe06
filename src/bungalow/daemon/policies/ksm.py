"""Memory sharing across VMs: when bungalow turns KSM on, and how fast it lets it scan.

``[memory] ksm`` in config.toml:

- ``auto`` (the default): KSM runs while this daemon has a running VM and the host runs
  more than one QEMU (this daemon's, other daemons', libvirt's: KSM merges across all);
- ``on``: KSM runs while this daemon has any running VM (one VM still shares pages with
  itself: zeroed pages, the guest's duplicate page cache);
- ``off``: this daemon never touches KSM (it still reports what KSM shares).

Who may switch the host-global knob is host/ksm_owner.py's rule: bungalow turns KSM on
only when it is off and nobody overruled it, turns it off only when it turned it on and
no daemon's VMs claim it any more, and never changes a KSM someone else turned on.

The scan rate, while bungalow holds KSM: :func:`scan_rate`, a ksmtuned-like rule of
bungalow's own, re-planned every :data:`INTERVAL`, with the kernel's advisor off where
there is one (:data:`TARGET_SCAN_S` says why not the advisor).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import UserError
from bungalow.host import ksm as kernel_ksm
from bungalow.host.ksm import Ksm, KsmSettings
from bungalow.host.ksm_owner import KsmOwnership, Standing

log = logging.getLogger(__name__)

KsmMode = Literal["off", "auto", "on"]
KSM_MODES: tuple[KsmMode, ...] = ("off", "auto", "on")
#: Seconds between two looks at the VMs and the knob.
INTERVAL = 5.0
#: ksmd's pause between two batches: the kernel's default.
SLEEP_MS = 20
#: Seconds a full scan of the mergeable memory should take. The kernel's advisor
#: (``advisor_mode = scan-time``, 6.7+) aims at 200 s but re-plans only at the end of a
#: full scan, and the first re-plan after it is switched on counts ksmd's CPU time since
#: boot against that one scan (its context is zeroed, CPU time included: mm/ksm.c,
#: scan_time_advisor). On this host, where ksmd had run before, it fell to 10 pages a
#: batch and merged four server VMs at 2 MB/s; so bungalow paces ksmd itself, every
#: :data:`INTERVAL`. A page costs ksmd about 1.2 us here (30% of a CPU at 250 000 pages a
#: second), so a full scan of 4 GiB a minute is about 2% of a CPU.
TARGET_SCAN_S = 60.0
#: ksmtuned's bounds on pages_to_scan (KSM_NPAGES_MIN, KSM_NPAGES_MAX).
MIN_PAGES, MAX_PAGES = 64, 1250
#: At most this share of one CPU for ksmd.
MAX_CPU = 0.25


def load_ksm(table: dict[str, Any], path: Path) -> KsmMode:
    """``[memory] ksm`` of config.toml (the other ``[memory]`` keys are the balloon's)."""
    value = table.get("ksm", "auto")
    for mode in KSM_MODES:
        if value == mode:
            return mode
    raise UserError(f'memory.ksm in {path} must be "off", "auto" or "on", not {value!r}.')


def wants_ksm(mode: KsmMode, own_vms: int, host_qemus: int) -> bool:
    """Whether this daemon claims KSM: ``own_vms`` are its running VMs, ``host_qemus`` every
    QEMU on the host, its own included."""
    if mode == "off" or own_vms == 0:
        return False
    return mode == "on" or host_qemus > 1


def scan_rate(mergeable_bytes: int, ksmd_cpu: float | None, current: int) -> int:
    """``pages_to_scan`` per ``SLEEP_MS`` wake-up where the kernel has no advisor.

    So that a full scan of ``mergeable_bytes`` (the QEMUs' resident memory) takes
    :data:`TARGET_SCAN_S`, within ksmtuned's bounds; when ksmd used more than
    :data:`MAX_CPU` of a CPU (``ksmd_cpu``, a share of one CPU over the last interval)
    at ``current`` pages, scaled down to fit."""
    wakes = TARGET_SCAN_S * 1000 / SLEEP_MS
    pages = math.ceil(mergeable_bytes / kernel_ksm.PAGE_SIZE / wakes)
    if ksmd_cpu is not None and ksmd_cpu > MAX_CPU and current > 0:
        pages = min(pages, int(current * MAX_CPU / ksmd_cpu))
    return max(MIN_PAGES, min(MAX_PAGES, pages))


@dataclass
class _CpuWatch:
    """ksmd's CPU share of one CPU between two looks."""

    last: tuple[float, int] | None = None

    def share(self) -> float | None:
        used = kernel_ksm.ksmd_cpu_ns()
        now = time.monotonic()
        previous, self.last = self.last, None if used is None else (now, used)
        if previous is None or used is None or now <= previous[0]:
            return None
        return (used - previous[1]) / 1e9 / (now - previous[0])


class KsmControl:
    """The daemon's KSM policy: every :data:`INTERVAL` it claims or drops KSM for its
    running VMs and, while bungalow holds it, sets the scan rate."""

    def __init__(
        self, vms: VmManager, mode: KsmMode, ksm: Ksm | None = None,
        ownership: KsmOwnership | None = None,
    ) -> None:  # fmt: skip
        self.vms = vms
        self.mode = mode
        self.ksm = ksm or Ksm()
        claimant = hashlib.sha256(str(vms.data.root.absolute()).encode()).hexdigest()[:16]
        self.ownership = ownership or KsmOwnership(claimant, self.ksm)
        self.standing: Standing | None = None
        self._cpu = _CpuWatch()

    def tuning(self, qemus: dict[int, int]) -> KsmSettings:
        """What bungalow sets while it holds KSM: its own rate (:func:`scan_rate`), with
        the kernel's advisor off where there is one (see :data:`TARGET_SCAN_S`)."""
        current = self.ksm.number("pages_to_scan")
        pages = scan_rate(sum(qemus.values()), self._cpu.share(), current)
        return KsmSettings(1, pages, SLEEP_MS, "none" if self.ksm.has_advisor else None)

    def pids(self) -> list[int]:
        """This daemon's QEMUs (read on the event loop, which changes the runtimes)."""
        return [runtime.pid for runtime in self.vms.runtimes.values()]

    def settle(self, pids: list[int]) -> Standing | None:
        """One look, for this daemon's QEMUs ``pids``: claim or drop KSM, and tune it if
        bungalow holds it (blocking: /proc, /sys and the registry's lock; run it in a
        thread). With ``ksm = "off"`` and no claim left from before, nothing (None)."""
        if self.mode == "off" and not self.ownership.held():
            self.standing = None
            return None
        qemus = kernel_ksm.qemu_processes()
        claim = pids if wants_ksm(self.mode, len(pids), len(qemus)) else []
        standing = self.ownership.settle(claim, self.tuning(qemus))
        if standing.changed and standing.changed != "tuned":
            log.info("KSM %s (%d daemons' VMs claim it)", standing.changed, standing.claims)
        self.standing = standing
        return standing

    def current(self) -> Standing:
        """Who holds KSM: as the last look found it, else looked at now (by ``run`` alone
        where the registry cannot be read: a daemon that is not root)."""
        if self.standing is not None:
            return self.standing
        try:
            return self.ownership.look()
        except OSError:
            if not self.ksm.available:
                return Standing("absent", False, 0)
            return Standing("other" if self.ksm.number("run") == 1 else "off", False, 0)

    async def run(self) -> None:
        """Settle every :data:`INTERVAL` seconds for as long as the daemon runs."""
        warned = False
        while True:
            try:
                await asyncio.to_thread(self.settle, self.pids())
            except OSError as exc:  # not root: the knobs stay as they are
                if not warned:
                    log.warning("cannot set KSM (%s); it stays as the host has it", exc)
                    warned = True
            except Exception:
                log.exception("settling KSM failed")
            await asyncio.sleep(INTERVAL)
