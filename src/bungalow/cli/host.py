"""``bungalow host info``: capacity, what is allocated, and the accelerator chosen and why."""

from __future__ import annotations

import typer

from bungalow.cli.common import client
from bungalow.cli.output import say_styled, size

app = typer.Typer(no_args_is_help=True)


@app.command()
def info() -> None:
    """What this host has, what VMs hold, and how they are accelerated."""
    host = client().host_info()
    accel = host["accel"]
    ratio, limit, free = host["ratios"], host["limit"], host["free"]
    probe = f" (probe {accel['probe_ms']:.1f} ms)" if accel.get("probe_ms") is not None else ""
    rows = [
        ("host", host["hostname"]),
        ("qemu", host["qemu"]),
        ("accelerator", f"{accel['name']}{probe}"),
        ("why", accel["reason"]),
        ("cpus", f"{host['cpus']} x {ratio['cpu']:g} = {limit['cpus']} vCPUs: "
                 f"{host['allocated_cpus']} allocated to running VMs, {free['cpus']} free"),
        ("memory", f"{size(host['memory'])} x {ratio['memory']:g}: "
                   f"{size(host['allocated_memory'])} allocated, {size(free['memory'])} free "
                   f"({size(host['memory_available'])} available now)"),
        ("disk", f"{size(host['disk_total'])} x {ratio['disk']:g}: "
                 f"{size(host['allocated_disk'])} allocated, {size(free['disk'])} free "
                 f"({size(host['disk_free'])} free now in {host['data_dir']})"),
        ("vms", f"{host['vms']} ({host['vms_running']} running)"),
    ]  # fmt: skip
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        say_styled(f"[bold]{key.ljust(width)}[/]  {value}")
