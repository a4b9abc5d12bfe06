"""Limits on a VM's share of the host: options of `launch`, and `bungalow set`."""

from __future__ import annotations

from typing import Annotated

import typer

from bungalow.cli.common import VmName, client, given
from bungalow.cli.output import say, size
from bungalow.errors import UserError

CpuWeight = Annotated[
    int | None, typer.Option("--cpu-weight", help="Relative CPU share under contention (100).")
]
CpuCap = Annotated[
    str | None, typer.Option("--cpu-cap", help="At most this many CPUs, e.g. 0.5 (none).")
]
MemoryLimit = Annotated[
    str | None, typer.Option("--memory-limit", help="Memory of the whole QEMU process, e.g. 1G.")
]
MemoryMin = Annotated[
    str | None,
    typer.Option(
        "--memory-min",
        help="Balloon floor, e.g. 512M: under memory pressure the host may take the VM's "
        "memory down to it (none: never).",
    ),
]
DiskIops = Annotated[str | None, typer.Option("--disk-iops", help="Disk operations per second.")]
DiskBw = Annotated[str | None, typer.Option("--disk-bw", help="Disk bytes per second, e.g. 100M.")]
DiskIopsBurst = Annotated[
    str | None, typer.Option("--disk-iops-burst", help="IOPS a 10 s burst may reach.")
]
DiskBwBurst = Annotated[
    str | None, typer.Option("--disk-bw-burst", help="Bandwidth a 10 s burst may reach.")
]

NetBw = Annotated[
    str | None,
    typer.Option("--net-bw", help="Network bytes per second, each way, e.g. 50M."),
]


def set_limits(
    name: VmName,
    cpu_weight: CpuWeight = None,
    cpu_cap: CpuCap = None,
    memory_limit: MemoryLimit = None,
    disk_iops: DiskIops = None,
    disk_bw: DiskBw = None,
    disk_iops_burst: DiskIopsBurst = None,
    disk_bw_burst: DiskBwBurst = None,
    net_bw: NetBw = None,
    memory_min: MemoryMin = None,
) -> None:
    """Change a VM's limits and balloon floor, live if it runs; 0 or none lifts one."""
    body = given(
        cpu_weight=cpu_weight, cpu_cap=cpu_cap, memory_limit=memory_limit, disk_iops=disk_iops,
        disk_bw=disk_bw, disk_iops_burst=disk_iops_burst, disk_bw_burst=disk_bw_burst,
        net_bw=net_bw, memory_min=memory_min,
    )  # fmt: skip
    if not body:
        raise UserError(
            f"Nothing to change on {name}: give a limit or floor, such as --cpu-weight 200 or "
            "--memory-min 512M (bungalow set --help lists them)."
        )
    vm = client().set_limits(name, **body)
    if any(key != "memory_min" for key in body):  # a floor alone has its own line below
        shown = ", ".join(f"{key}={value}" for key, value in sorted(vm["limits"].items()))
        say(f"{name}: {shown or 'no limits'}")
    if memory_min is not None:
        floor = vm["memory_min"]
        say(f"{name}: memory floor {'none' if floor is None else size(floor)}")
        if floor is not None and vm["state"] == "running" and not vm["balloon"]:
            say(
                f"{name} runs without a balloon that can give memory back (started before "
                "balloons, with [memory] balloon = false, or from a snapshot's memory), so "
                f"the floor applies from its next cold start (bungalow stop {name}; "
                f"bungalow start {name})."
            )
    if "net_bw" in vm.get("limits_pending", []):
        say(
            f"{name} was started without a network limit, so it applies from its next start "
            f"(bungalow stop {name}; bungalow start {name})."
        )


def register(app: typer.Typer) -> None:
    app.command("set")(set_limits)
