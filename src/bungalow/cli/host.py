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
    probe = f" (probe {accel['probe_ms']:.1f} ms)" if accel.get("probe_ms") is not None else ""
    rows = [
        ("host", host["hostname"]),
        ("qemu", host["qemu"]),
        ("accelerator", f"{accel['name']}{probe}"),
        ("why", accel["reason"]),
        ("cpus", f"{host['cpus']} ({host['allocated_cpus']} allocated to running VMs)"),
        ("memory", f"{size(host['memory'])} ({size(host['memory_available'])} available, "
                   f"{size(host['allocated_memory'])} allocated)"),
        ("disk", f"{size(host['disk_free'])} free of {size(host['disk_total'])} "
                 f"in {host['data_dir']}"),
        ("vms", f"{host['vms']} ({host['vms_running']} running)"),
    ]  # fmt: skip
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        say_styled(f"[bold]{key.ljust(width)}[/]  {value}")
