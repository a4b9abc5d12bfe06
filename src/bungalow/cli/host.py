"""``bungalow host info``: capacity, what is allocated, and the accelerator chosen and why."""

from __future__ import annotations

import typer

from bungalow import __version__
from bungalow.cli import overhead
from bungalow.cli.common import AsJson, client
from bungalow.cli.output import print_json, say_styled, size, warn
from bungalow.client.shapes import ArchitectureInfo

app = typer.Typer(no_args_is_help=True)


@app.command()
def info(as_json: AsJson = False) -> None:
    """What this host has, what VMs hold, how they are accelerated, and the daemon's version
    (with a warning on stderr when it is not this CLI's)."""
    host = client().host_info()
    if host["version"] != __version__:
        warn(
            f"bungalowd runs bungalow {host['version']} but this CLI is {__version__}; end that "
            "bungalowd (its VMs keep running) and the next command starts this version."
        )
    if as_json:
        print_json(host)
        return
    accel = host["accel"]
    ratio, limit, free = host["ratios"], host["limit"], host["free"]
    probe = f" (probe {accel['probe_ms']:.1f} ms)" if accel.get("probe_ms") is not None else ""
    rows = [
        ("host", host["hostname"]),
        ("version", f"{host['version']} (bungalowd), {__version__} (this CLI)"),
        ("qemu", host["qemu"]),
        ("accelerator", f"{accel['name']}{probe}"),
        ("why", accel["reason"]),
        ("cpus", f"{host['cpus']} x {ratio['cpu']:g} = {limit['cpus']} vCPUs: "
                 f"{host['allocated_cpus']} allocated to running VMs, {free['cpus']} free"),
        ("memory", f"{size(host['memory'])} x {ratio['memory']:g}: "
                   f"{_amount(host['allocated_memory'])} allocated, {size(free['memory'])} free "
                   f"({size(host['memory_available'])} available now)"),
        ("disk", f"{size(host['disk_total'])} x {ratio['disk']:g}: "
                 f"{_amount(host['allocated_disk'])} allocated, {size(free['disk'])} free "
                 f"({size(host['disk_free'])} free now in {host['data_dir']})"),
        ("vms", f"{host['vms']} ({host['vms_running']} running)"),
        *(
            (f"firmware {f['name']}", f["code"] if f["installed"] and f["vars_template"] is None
             else f"{f['code']} + {f['vars_template']}" if f["installed"]
             else f"not installed (apt-get install {f['package']})")
            for f in host.get("firmwares", [])
        ),
    ]  # fmt: skip
    for arch in host["architectures"]:
        rows.append((arch["name"], _architecture(arch, accel["reason"])))
    memory = host.get("memory_use")
    if memory is not None:
        rows += overhead.memory_lines(memory)
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        say_styled(f"[bold]{key.ljust(width)}[/]  {value}")


def _architecture(arch: ArchitectureInfo, host_reason: str) -> str:
    """One architecture's line: its emulator, accelerator (and why, unless it is the host's
    reason) and whether its images can be built."""
    if not arch["installed"]:
        return f"[yellow]{arch['qemu_binary']} not installed[/] (apt-get install {arch['package']})"
    build = "images build" if arch["binfmt"] else "[yellow]no binfmt handler to build images[/]"
    line = f"{arch['qemu_binary']}, {arch['accel']['name']}, {build}"
    reason = arch["accel"]["reason"]
    return line if reason == host_reason else f"{line}: {reason}"


def _amount(value: int) -> str:
    """A size that may be nothing at all: 0 rather than the tables' "-"."""
    return size(value) if value else "0"
