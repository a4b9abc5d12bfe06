"""The shapes of what VMs cost the host in memory (api/overhead.py, ``host info``).

Every size is in bytes; where each figure comes from is daemon/telemetry/memory.py's
docstring.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class VmOverhead(BaseModel):
    """One running VM's memory as the host sees it."""

    vm: str
    memory: int = Field(description="the VM's nominal memory (-m)")
    pss: int = Field(description="its QEMU's proportional set size (smaps_rollup Pss)")
    rss: int = Field(description="its QEMU's resident set size")
    guest_ram: int = Field(description="the part of pss that is guest RAM (mergeable mappings)")
    overhead: int = Field(description="QEMU's own memory: pss - guest_ram")
    guest_used: int | None = Field(
        description="MemTotal - MemAvailable of the guest's /proc/meminfo (through the agent)"
    )
    ksm_merging: int | None = Field(description="its pages KSM merged (ksm_merging_pages)")
    ksm_profit: int | None = Field(description="what merging saves it (ksm_process_profit)")
    given_back: int | None = Field(
        description="what the guest freed and the host took back (free page reporting)"
    )


class KsmInfo(BaseModel):
    """KSM on this host, and who holds its switch."""

    mode: Literal["off", "auto", "on"] = Field(description="[memory] ksm of this daemon")
    holder: Literal["bungalow", "other", "off", "yielded", "absent"] = Field(
        description="bungalow: turned on by bungalow; other: by someone else; yielded: "
        "turned off by someone after bungalow turned it on, and left so; absent: no KSM"
    )
    claims: int = Field(description="bungalow daemons whose VMs claim KSM now")
    run: int = Field(description="/sys/kernel/mm/ksm/run")
    advisor_mode: str | None = Field(description="none or scan-time; None before Linux 6.7")
    pages_to_scan: int
    sleep_millisecs: int
    full_scans: int
    pages_shared: int
    pages_sharing: int
    ksmd_cpu_seconds: float | None = Field(description="ksmd's CPU time since boot")


class HostMemoryInfo(BaseModel):
    """The host's memory, summed over the running VMs (``host info``'s memory section)."""

    allocated: int = Field(description="the running VMs' nominal memory")
    qemu_pss: int = Field(description="their QEMUs' summed PSS: what they really take")
    guest_ram: int = Field(description="of which guest RAM")
    guest_used: int | None = Field(description="what the guests say they use, summed")
    shared: int = Field(description="what KSM saves host-wide: (pages_sharing + zero pages) x page")
    ksm_profit: int = Field(description="general_profit: that less KSM's own metadata")
    given_back: int | None = Field(description="what guests freed and the host took back")
    overhead_median: int | None = Field(description="the median VM's QEMU overhead")
    ksm: KsmInfo


class Overhead(BaseModel):
    """``GET /v1/overhead``: each running VM's memory, and the sums."""

    vms: list[VmOverhead]
    host: HostMemoryInfo
