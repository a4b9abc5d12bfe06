"""VM lifecycle commands: launch, run, ls, inspect, start, stop, rm, logs."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bungalow.cli.common import client, given
from bungalow.cli.cost import money
from bungalow.cli.guest import stream_exec
from bungalow.cli.leases import OnExpiry, lease_text
from bungalow.cli.limits import (
    CpuCap,
    CpuWeight,
    DiskBw,
    DiskBwBurst,
    DiskIops,
    DiskIopsBurst,
    MemoryLimit,
    NetBw,
)
from bungalow.cli.output import age, error, print_json, progress, say, size, table
from bungalow.errors import BungalowError, NotFoundError
from bungalow.names import parse_labels

if TYPE_CHECKING:
    from bungalow.client.shapes import VmInfo

Cpus = Annotated[int, typer.Option("--cpus", "-c", help="Virtual CPUs.")]
Memory = Annotated[str, typer.Option("--memory", "-m", help="Memory, e.g. 512M or 2G.")]
Disk = Annotated[str | None, typer.Option("--disk", "-d", help="Disk size, e.g. 8G (default: 4G).")]
Ports = Annotated[
    list[str] | None,
    typer.Option("--publish", "-p", help="Forward [ADDR:]HOST:GUEST[/udp] to the guest."),
]
Accel = Annotated[str, typer.Option("--accel", help="auto, kvm or tcg.")]
Profile = Annotated[str | None, typer.Option("--profile", help="micro or pc.")]


def invoking_user() -> str | None:
    """The login of whoever runs the CLI, through sudo too; None if it cannot be told."""
    name = os.environ.get("SUDO_USER") or os.environ.get("USER") or os.environ.get("LOGNAME")
    if not name:
        try:
            name = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            return None
    return name


def ensure_image(name: str) -> None:
    """Build a recipe image the first time it is asked for, with a progress bar."""
    api = client()
    try:
        api.get_image(name)
        return
    except NotFoundError:
        if name not in api.recipes():
            raise
    progress(api.build_image(name), f"building {name}")


def _launch(name: str, image: str, cpus: int, memory: str, disk: str | None,
            ports: list[str], accel: str, profile: str | None,
            extra: dict[str, Any] | None = None) -> VmInfo:  # fmt: skip
    ensure_image(image)
    spec: dict[str, Any] = {
        "name": name, "image": image, "cpus": cpus, "memory": memory,
        "ports": ports, "accel": accel, "profile": profile, **(extra or {}),
    }  # fmt: skip
    if disk is not None:
        spec["disk"] = disk
    return client().create_vm(**spec)


def launch(
    name: Annotated[str, typer.Argument(help="Name of the new VM.")],
    image: Annotated[str, typer.Option("--image", "-i", help="Image to boot.")] = "debian-12",
    cpus: Cpus = 1,
    memory: Memory = "512M",
    disk: Disk = None,
    ports: Ports = None,
    accel: Accel = "auto",
    profile: Profile = None,
    cpu_weight: CpuWeight = None,
    cpu_cap: CpuCap = None,
    memory_limit: MemoryLimit = None,
    disk_iops: DiskIops = None,
    disk_bw: DiskBw = None,
    disk_iops_burst: DiskIopsBurst = None,
    disk_bw_burst: DiskBwBurst = None,
    net_bw: NetBw = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Project to charge (admin; a token implies it).")
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option("--owner", help="Person or team the VM is for (default: you)."),
    ] = None,
    labels: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="KEY=VALUE label; repeat for more."),
    ] = None,
    ttl: Annotated[str | None, typer.Option("--ttl", help="Lease: 2h, 1d... from now.")] = None,
    on_expiry: OnExpiry = None,
    idle_after: Annotated[
        str | None, typer.Option("--idle-after", help="Idle (no CPU, disk, net, exec) this long.")
    ] = None,
    on_idle: Annotated[
        str | None,
        typer.Option("--on-idle", help="stop, suspend, snapshot-and-delete, delete or none."),
    ] = None,
) -> None:
    """Create a VM from an image and boot it."""
    body = given(
        cpu_weight=cpu_weight, cpu_cap=cpu_cap, memory_limit=memory_limit, disk_iops=disk_iops,
        disk_bw=disk_bw, disk_iops_burst=disk_iops_burst, disk_bw_burst=disk_bw_burst,
        net_bw=net_bw, project=project, ttl=ttl, on_expiry=on_expiry, idle_after=idle_after,
        on_idle=on_idle,
    )  # fmt: skip
    body["owner"] = owner or invoking_user()
    body["labels"] = parse_labels(labels or [])
    vm = _launch(name, image, cpus, memory, disk, ports or [], accel, profile, body)
    say(f"{vm['name']} is running ({vm['image']}, {vm['cpus']} CPU, {size(vm['memory'])})")


def run(
    image: Annotated[str, typer.Argument(help="Image to boot.")],
    command: Annotated[list[str], typer.Argument(help="Command to run, after --.")],
    remove: Annotated[bool, typer.Option("--rm", help="Delete the VM afterwards.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Name of the VM.")] = None,
    cpus: Cpus = 1,
    memory: Memory = "512M",
    disk: Disk = None,
    ports: Ports = None,
    accel: Accel = "auto",
) -> None:
    """Boot a new VM, run one command in it, pass its exit code on."""
    vm_name = name or f"run-{secrets.token_hex(3)}"
    _launch(vm_name, image, cpus, memory, disk, ports or [], accel, None,
            {"owner": invoking_user()})  # fmt: skip
    try:
        code = stream_exec(vm_name, command)
    finally:
        if remove:
            client().remove_vm(vm_name)
        else:
            print(f"bungalow: the VM {vm_name} keeps running.", file=sys.stderr)
    raise typer.Exit(code)


def ls(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Names only.")] = False,
) -> None:
    """List VMs."""
    vms = client().list_vms()
    if quiet:
        for vm in vms:
            say(vm["name"])
        return
    table(
        ["NAME", "STATE", "IMAGE", "CPUS", "MEMORY", "DISK", "PORTS", "AGE", "EXPIRES", "COST"],
        (
            [
                vm["name"], vm["state"], vm["image"], vm["cpus"], size(vm["memory"]),
                _disk(vm), ",".join(vm["ports"]) or "-", age(vm["created"]),
                f"{lease_text(vm)} (pool)" if vm.get("pooled") else lease_text(vm),
                _cost(vm),
            ]
            for vm in vms
        ),
    )  # fmt: skip
    for vm in vms:  # paused by no one's command: say why, and what to do
        if vm["state"] == "paused" and vm.get("error"):
            say(f"{vm['name']} is paused: {vm['error']}.")


def _disk(vm: VmInfo) -> str:
    """Space really used on the host out of the disk's size, plus snapshots if any."""
    text = f"{size(vm['disk_used'])}/{size(vm['disk_size'])}"
    if vm.get("snapshots_used"):
        text += f" +{size(vm['snapshots_used'])} snap"
    return text


def _cost(vm: VmInfo) -> str:
    """What the VM has cost so far (snapshots included)."""
    cost = vm.get("cost")
    return "-" if not cost else money(cost["so_far"], cost["currency"])


def inspect(name: Annotated[str, typer.Argument(help="VM name.")]) -> None:
    """Everything the daemon knows about a VM, as JSON."""
    api = client()
    shown = {**api.get_vm(name), "events": api.events_log(name)[-10:]}
    print_json(json.dumps(shown))


def start(names: Annotated[list[str], typer.Argument(help="VM names.")]) -> None:
    """Boot stopped VMs."""
    for name in names:
        client().start_vm(name)
        say(f"{name} is running")


def stop(
    names: Annotated[list[str], typer.Argument(help="VM names.")],
    timeout: Annotated[
        float, typer.Option("--timeout", "-t", help="Seconds to wait before forcing it off.")
    ] = 30.0,
) -> None:
    """Shut VMs down cleanly (forced after --timeout); their disks are kept."""
    for name in names:
        client().stop_vm(name, timeout)
        say(f"{name} is stopped")


def rm(
    names: Annotated[list[str], typer.Argument(help="VM names.")],
) -> None:
    """Delete VMs, running or not, with their disks."""
    failed = False
    for name in names:
        try:
            client().remove_vm(name)
            say(f"{name} is removed")
        except BungalowError as exc:
            if len(names) == 1:
                raise
            error(exc.message)
            failed = True
    if failed:
        raise typer.Exit(1)


def logs(
    name: Annotated[str, typer.Argument(help="VM name.")],
    tail: Annotated[int, typer.Option("--tail", "-n", help="Only the last N lines.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
) -> None:
    """The VM's serial console output."""
    api = client()
    text = api.logs(name, tail)
    sys.stdout.write(text)
    sys.stdout.flush()
    seen = len(api.logs(name)) if follow else 0
    while follow:
        time.sleep(0.5)
        whole = api.logs(name)
        if len(whole) > seen:
            sys.stdout.write(whole[seen:])
            sys.stdout.flush()
        seen = len(whole)


def register(app: typer.Typer) -> None:
    for command in (launch, run, ls, inspect, start, stop, rm, logs):
        app.command()(command)
