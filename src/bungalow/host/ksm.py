"""Kernel samepage merging (KSM) as the kernel shows it: ``/sys/kernel/mm/ksm`` and ``/proc``.

KSM is host-global: one ``ksmd`` thread scans every memory area a process marked
``MADV_MERGEABLE`` (QEMU marks each guest RAM block so under ``-machine mem-merge=on``,
its default) and merges identical pages into one copy-on-write page. The kernel's
documentation (Documentation/admin-guide/mm/ksm.rst) names every figure read here:

- totals (:class:`KsmTotals`): ``pages_shared`` (KSM pages in use), ``pages_sharing``
  (further places mapping them: the pages saved), ``general_profit`` (bytes saved minus
  the rmap items' own cost), ``full_scans``, ``ksm_zero_pages``;
- per process (:func:`process_stat`, ``/proc/PID/ksm_stat``, kernel 6.1+):
  ``ksm_merging_pages``, ``ksm_rmap_items``, ``ksm_zero_pages``, ``ksm_process_profit``;
- the knobs (:class:`KsmSettings`): ``run`` (0 stop, 1 run, 2 unmerge all),
  ``pages_to_scan``, ``sleep_millisecs`` and, on kernel 6.7+, ``advisor_mode``
  (``none`` or ``scan-time``: the kernel then picks ``pages_to_scan`` itself so that
  a full scan takes ``advisor_target_scan_time`` seconds, within ``advisor_max_cpu``
  percent of a CPU).

Who may change the knobs, when several daemons share a host, is
:mod:`bungalow.host.ksm_owner`'s matter; this module only reads and writes them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

KSM_DIR = Path("/sys/kernel/mm/ksm")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class KsmSettings:
    """The knobs bungalow sets, and puts back. ``advisor_mode`` is None where the kernel
    has no advisor (before 6.7)."""

    run: int
    pages_to_scan: int
    sleep_millisecs: int
    advisor_mode: str | None = None
    #: The advisor's ceiling, in percent of one CPU (None: not set, or no advisor).
    advisor_max_cpu: int | None = None

    def to_json(self) -> dict[str, int | str | None]:
        return {
            "run": self.run,
            "pages_to_scan": self.pages_to_scan,
            "sleep_millisecs": self.sleep_millisecs,
            "advisor_mode": self.advisor_mode,
            "advisor_max_cpu": self.advisor_max_cpu,
        }

    def same_as(self, other: KsmSettings) -> bool:
        """Whether ``other`` is these settings; under the advisor, whatever scan rate it
        picked."""
        if self.advisor_mode == "scan-time":
            return (self.run, self.sleep_millisecs, self.advisor_mode, self.advisor_max_cpu) == (
                other.run, other.sleep_millisecs, other.advisor_mode, other.advisor_max_cpu,
            )  # fmt: skip
        return self == other

    @classmethod
    def from_json(cls, data: dict[str, object]) -> KsmSettings:
        mode, max_cpu = data.get("advisor_mode"), data.get("advisor_max_cpu")
        return cls(
            run=int(str(data["run"])),
            pages_to_scan=int(str(data["pages_to_scan"])),
            sleep_millisecs=int(str(data["sleep_millisecs"])),
            advisor_mode=None if mode is None else str(mode),
            advisor_max_cpu=None if max_cpu is None else int(str(max_cpu)),
        )


@dataclass(frozen=True)
class KsmTotals:
    """What KSM shares on the whole host, in pages (``general_profit`` in bytes)."""

    pages_shared: int = 0
    pages_sharing: int = 0
    pages_unshared: int = 0
    pages_volatile: int = 0
    full_scans: int = 0
    general_profit: int = 0
    ksm_zero_pages: int = 0

    @property
    def saved_bytes(self) -> int:
        """Memory merging saves: every sharing place but the one kept, plus the zero pages
        merged into the kernel's zero page (``use_zero_pages``)."""
        return (self.pages_sharing + self.ksm_zero_pages) * PAGE_SIZE


@dataclass(frozen=True)
class KsmProcess:
    """One process's ``/proc/PID/ksm_stat`` (pages; ``profit`` in bytes, may be negative)."""

    merging_pages: int
    rmap_items: int
    zero_pages: int
    profit: int

    @property
    def merging_bytes(self) -> int:
        return self.merging_pages * PAGE_SIZE


@dataclass(frozen=True)
class Ksm:
    """The KSM knobs and counters under ``root`` (``/sys/kernel/mm/ksm``; a test's copy)."""

    root: Path = KSM_DIR

    @property
    def available(self) -> bool:
        """Whether this kernel has KSM (CONFIG_KSM)."""
        return (self.root / "run").exists()

    @property
    def has_advisor(self) -> bool:
        """Whether the kernel picks the scan rate itself (advisor_mode, Linux 6.7+)."""
        return (self.root / "advisor_mode").exists()

    def read(self, name: str) -> str:
        return (self.root / name).read_text().strip()

    def number(self, name: str) -> int:
        try:
            return int(self.read(name))
        except (OSError, ValueError):
            return 0

    def write(self, name: str, value: int | str) -> None:
        """Write one knob; an OSError (no root, a value the kernel refuses) goes up."""
        (self.root / name).write_text(f"{value}\n")

    def advisor_mode(self) -> str | None:
        """The advisor's mode: the bracketed word of ``[none] scan-time``; None without one."""
        if not self.has_advisor:
            return None
        text = self.read("advisor_mode")
        start, end = text.find("["), text.find("]")
        return text[start + 1 : end] if 0 <= start < end else text.split()[0]

    def settings(self) -> KsmSettings:
        return KsmSettings(
            run=self.number("run"),
            pages_to_scan=self.number("pages_to_scan"),
            sleep_millisecs=self.number("sleep_millisecs"),
            advisor_mode=self.advisor_mode(),
            advisor_max_cpu=(
                self.number("advisor_max_cpu") if (self.root / "advisor_max_cpu").exists() else None
            ),
        )

    def apply(self, settings: KsmSettings) -> None:
        """Set every knob of ``settings``: the advisor's mode first (changing it resets
        ``pages_to_scan``, which the kernel refuses to take while an advisor runs), ``run``
        last."""
        if settings.advisor_max_cpu is not None and self.has_advisor:
            self.write("advisor_max_cpu", settings.advisor_max_cpu)
        mode = settings.advisor_mode
        if mode is not None and self.has_advisor and self.advisor_mode() != mode:
            self.write("advisor_mode", mode)
        if settings.advisor_mode in (None, "none"):
            self.write("pages_to_scan", settings.pages_to_scan)
        self.write("sleep_millisecs", settings.sleep_millisecs)
        self.write("run", settings.run)

    def totals(self) -> KsmTotals:
        return KsmTotals(
            pages_shared=self.number("pages_shared"),
            pages_sharing=self.number("pages_sharing"),
            pages_unshared=self.number("pages_unshared"),
            pages_volatile=self.number("pages_volatile"),
            full_scans=self.number("full_scans"),
            general_profit=self.number("general_profit"),
            ksm_zero_pages=self.number("ksm_zero_pages"),
        )


def process_stat(pid: int, proc: Path = Path("/proc")) -> KsmProcess | None:
    """``pid``'s KSM figures from ``/proc/PID/ksm_stat``; None if it is gone, unreadable
    (another user's, for a daemon that is not root) or the kernel predates the file."""
    try:
        text = (proc / str(pid) / "ksm_stat").read_text()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return KsmProcess(
        merging_pages=values.get("ksm_merging_pages", 0),
        rmap_items=values.get("ksm_rmap_items", 0),
        zero_pages=values.get("ksm_zero_pages", 0),
        profit=values.get("ksm_process_profit", 0),
    )


def ksmd_cpu_ns(proc: Path = Path("/proc")) -> int | None:
    """CPU time the ``ksmd`` kernel thread has used since boot, in nanoseconds (its utime
    plus stime in ``/proc/PID/stat``); None if there is no ksmd."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "ksmd":
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[1] != "2":  # a kernel thread's parent is kthreadd
            continue
        return (int(fields[11]) + int(fields[12])) * _TICK_NS
    return None


def qemu_processes(proc: Path = Path("/proc")) -> dict[int, int]:
    """Every QEMU system emulator on the host (bungalow's, other daemons', libvirt's), by
    pid, with its resident memory in bytes: what KSM could merge between them."""
    found: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith("qemu-system"):
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        rss = next(
            (line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "0"
        )
        found[int(entry.name)] = int(rss) * 1024
    return found
