"""``bungalow overhead``: what each running VM really costs the host in memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bungalow.cli.common import AsJson, client
from bungalow.cli.output import print_json, say, size, table

if TYPE_CHECKING:
    from bungalow.client.shapes import HostMemoryInfo, KsmInfo, VmOverhead

COLUMNS = ["VM", "MEMORY", "GUEST USES", "QEMU PSS", "GUEST RAM", "QEMU OVERHEAD", "KSM SHARED",
           "GIVEN BACK"]  # fmt: skip


def _bytes(value: int | None) -> str:
    """A size, ``0`` for nothing and ``-`` for not known."""
    return "-" if value is None else "0" if value == 0 else size(value)


def _row(vm: VmOverhead) -> list[str]:
    return [
        vm["vm"], _bytes(vm["memory"]), _bytes(vm["guest_used"]), _bytes(vm["pss"]),
        _bytes(vm["guest_ram"]), _bytes(vm["overhead"]), _bytes(vm["ksm_merging"]),
        _bytes(vm["given_back"]),
    ]  # fmt: skip


def ksm_line(ksm: KsmInfo) -> str:
    """KSM's state in words: whether it runs, who turned it on, how it scans."""
    holder = {
        "bungalow": f"on, turned on by bungalow for {ksm['claims']} daemon(s)' VMs",
        "other": "on, turned on by someone else (bungalow leaves its settings alone)",
        "off": "off",
        "yielded": "off: turned off by someone after bungalow turned it on; bungalow leaves "
        "it so until the host reboots",
        "absent": "not in this kernel",
    }[ksm["holder"]]
    if ksm["run"] == 1:
        rate = (
            "the kernel's advisor (scan-time)"
            if ksm["advisor_mode"] == "scan-time"
            else f"{ksm['pages_to_scan']} pages every {ksm['sleep_millisecs']} ms"
        )
        holder += f"; scans at {rate}, {ksm['full_scans']} full scans"
    return f"{holder} (memory.ksm = {ksm['mode']})"


def memory_lines(host: HostMemoryInfo) -> list[tuple[str, str]]:
    """``host info``'s memory section and ``overhead``'s totals, as (key, value) rows."""
    ksm = host["ksm"]
    cpu = ksm["ksmd_cpu_seconds"]
    return [
        ("guests", f"{_bytes(host['allocated'])} allocated, {_bytes(host['qemu_pss'])} taken "
                   f"by their QEMUs (PSS), of which {_bytes(host['guest_ram'])} guest RAM; "
                   f"guests use {_bytes(host['guest_used'])}"),
        ("shared", f"{_bytes(host['shared'])} saved by KSM on this host "
                   f"({_bytes(host['ksm_profit'])} net of its metadata)"),
        ("returned", _bytes(host["given_back"]) + " given back by guests (free page reporting)"
         if host["given_back"] is not None else "- (not reported)"),
        ("overhead", f"{_bytes(host['overhead_median'])} per VM (median QEMU overhead)"),
        ("ksm", ksm_line(ksm) + ("" if cpu is None else f"; ksmd used {cpu:.1f} s of CPU")),
    ]  # fmt: skip


def overhead(as_json: AsJson = False) -> None:
    """Per running VM: its nominal memory, what the guest uses, its QEMU's PSS, of which guest
    RAM and QEMU's own overhead, what KSM shares of it and what it gave back."""
    report = client().overhead()
    if as_json:
        print_json(report)
        return
    if not report["vms"]:
        say("No VM is running.")
    else:
        table(COLUMNS, (_row(vm) for vm in report["vms"]))
        if any(vm["given_back"] is None for vm in report["vms"]):
            say(
                "GIVEN BACK - : no balloon, no report yet, or a VM started from a snapshot, "
                "which keeps what it frees until it is started afresh (its RAM is the "
                "snapshot's file)."
            )
    lines = memory_lines(report["host"])
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        say(f"{key.ljust(width)}  {value}")
