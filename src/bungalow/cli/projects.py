"""``bungalow project``: projects with their own API token and quotas (the host admin's)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bungalow.cli.common import AsJson, client, given
from bungalow.cli.output import print_json, say, size, table

app = typer.Typer(no_args_is_help=True, help="Projects: an API token and quotas each.")

MaxVcpus = Annotated[int | None, typer.Option("--max-vcpus", help="vCPUs of running VMs.")]
MaxMemory = Annotated[str | None, typer.Option("--max-memory", help="Memory of running VMs.")]
MaxDisk = Annotated[str | None, typer.Option("--max-disk", help="Disk of all its VMs.")]
MaxVms = Annotated[int | None, typer.Option("--max-vms", help="How many VMs.")]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Project name.")],
    max_vcpus: MaxVcpus = None,
    max_memory: MaxMemory = None,
    max_disk: MaxDisk = None,
    max_vms: MaxVms = None,
) -> None:
    """Make a project and print its token (shown this once: keep it)."""
    quota = given(max_vcpus=max_vcpus, max_memory=max_memory, max_disk=max_disk, max_vms=max_vms)
    project = client().create_project(name, **quota)
    say(project["token"])


def _used(used: int, quota: int | None, show: Any = str) -> str:
    return f"{show(used)}/{'-' if quota is None else show(quota)}"


@app.command("ls")
def ls(as_json: AsJson = False) -> None:
    """Projects with what their VMs use against their quotas."""
    projects = client().list_projects()
    if as_json:
        print_json(projects)
        return
    rows = []
    for p in projects:
        q, u = p["quota"], p["used"]
        rows.append([
            p["name"], _used(u["vms"], q["vms"]), _used(u["vcpus"], q["vcpus"]),
            _used(u["memory"], q["memory"], size), _used(u["disk"], q["disk"], size),
        ])  # fmt: skip
    table(["PROJECT", "VMS", "VCPUS", "MEMORY", "DISK"], rows)


@app.command("set")
def set_quota(
    name: Annotated[str, typer.Argument(help="Project name.")],
    max_vcpus: MaxVcpus = None,
    max_memory: MaxMemory = None,
    max_disk: MaxDisk = None,
    max_vms: MaxVms = None,
    idle_after: Annotated[
        str | None, typer.Option("--idle-after", help="Default: idle this long (30m).")
    ] = None,
    on_idle: Annotated[
        str | None, typer.Option("--on-idle", help="Default idle action: stop, suspend...")
    ] = None,
    idle_cpu: Annotated[str | None, typer.Option("--idle-cpu", help="Busy above: 5%.")] = None,
    idle_disk: Annotated[str | None, typer.Option("--idle-disk", help="Busy above: 64K/s.")] = None,
    idle_net: Annotated[str | None, typer.Option("--idle-net", help="Busy above: 16K/s.")] = None,
) -> None:
    """Change a project's quotas and its VMs' default idle policy."""
    body = given(max_vcpus=max_vcpus, max_memory=max_memory, max_disk=max_disk, max_vms=max_vms,
                  idle_after=idle_after, on_idle=on_idle, idle_cpu=idle_cpu, idle_disk=idle_disk,
                  idle_net=idle_net)  # fmt: skip
    client().update_project(name, **body)
    say(f"project {name} updated")


@app.command("rm")
def rm(
    name: Annotated[str, typer.Argument(help="Project name.")],
    orphan_vms: Annotated[
        bool, typer.Option("--orphan-vms", help="Keep its VMs (`sprawl` lists them as orphans).")
    ] = False,
) -> None:
    """Remove a project that has no VMs left (or keep them as orphans)."""
    client().remove_project(name, orphan_vms=orphan_vms)
    say(f"project {name} is removed")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="project")
