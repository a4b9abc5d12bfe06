"""Saved states: pause, resume, snapshot create/ls/restore/rm, and clone."""

from __future__ import annotations

from typing import Annotated

import typer

from bungalow.cli.common import client
from bungalow.cli.output import age, say, size, table

app = typer.Typer(no_args_is_help=True, help="Save, list, restore and remove VM snapshots.")

VmName = Annotated[str, typer.Argument(help="VM name.")]
SnapName = Annotated[str, typer.Argument(help="Snapshot name.")]


def pause(names: Annotated[list[str], typer.Argument(help="VM names.")]) -> None:
    """Freeze running VMs: their CPUs stop, memory and connections stay."""
    for name in names:
        client().pause_vm(name)
        say(f"{name} is paused")


def resume(names: Annotated[list[str], typer.Argument(help="VM names.")]) -> None:
    """Let paused VMs run again (their clocks are set right)."""
    for name in names:
        client().resume_vm(name)
        say(f"{name} is running")


def clone(
    source: Annotated[str, typer.Argument(help="The VM to copy.")],
    name: Annotated[str, typer.Argument(help="Name of the new VM.")],
    snapshot: Annotated[
        str | None,
        typer.Option("--snapshot", "-s", help="Start from this snapshot instead of from now."),
    ] = None,
) -> None:
    """A new VM running from SOURCE's snapshot, or from SOURCE as it runs now."""
    vm = client().clone_vm(source, name, snapshot)
    say(f"{vm['name']} is {vm['state']} (cloned from {source})")


@app.command("create")
def create(vm: VmName, name: SnapName) -> None:
    """Save a VM: memory, devices and disk if it runs, its disk if it is stopped."""
    snap = client().create_snapshot(vm, name)
    what = "memory, devices and disk" if snap["kind"] == "full" else "disk only"
    say(f"snapshot {name} of {vm} saved ({what}, {size(snap['size'])})")


@app.command("ls")
def ls(vm: VmName) -> None:
    """A VM's snapshots, with the space each takes."""
    snaps = client().list_snapshots(vm)
    table(
        ["NAME", "KIND", "SIZE", "AGE", "USED BY"],
        (
            [s["name"], s["kind"], size(s["size"]), age(s["created"]), ", ".join(s["used_by"])]
            for s in snaps
        ),
    )


@app.command("restore")
def restore(vm: VmName, name: SnapName) -> None:
    """Put a VM back as it was at the snapshot (a running one keeps running from there)."""
    result = client().restore_snapshot(vm, name)
    say(f"{vm} is {result['state']} from snapshot {name}")


@app.command("rm")
def rm(vm: VmName, names: Annotated[list[str], typer.Argument(help="Snapshot names.")]) -> None:
    """Delete snapshots and free their space."""
    for name in names:
        client().remove_snapshot(vm, name)
        say(f"snapshot {name} of {vm} is removed")


def register(root: typer.Typer) -> None:
    for command in (pause, resume, clone):
        root.command()(command)
    root.add_typer(app, name="snapshot")
