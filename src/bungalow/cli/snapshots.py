"""Saved states: pause, resume, snapshot create/ls/restore/rm, clone and fork."""

from __future__ import annotations

from typing import Annotated

import typer

from bungalow.cli.common import AsJson, VmNames, client, each
from bungalow.cli.complete import snapshot_names, vm_names
from bungalow.cli.output import age, print_json, say, size, table
from bungalow.cli.params import Count

app = typer.Typer(no_args_is_help=True, help="Save, list, restore and remove VM snapshots.")

# The VM argument is named ``vm`` so that snapshot names complete from it (cli/complete.py).
VmName = Annotated[str, typer.Argument(help="VM name.", autocompletion=vm_names)]
SnapName = Annotated[str, typer.Argument(help="Snapshot name.", autocompletion=snapshot_names)]


def pause(names: VmNames) -> None:
    """Freeze running VMs: their CPUs stop, memory and connections stay."""
    each(names, lambda name: f"{client().pause_vm(name)['name']} is paused")


def resume(names: VmNames) -> None:
    """Let paused VMs run again (their clocks are set right)."""
    each(names, lambda name: f"{client().resume_vm(name)['name']} is running")


def fork(
    vm: VmName,
    count: Annotated[
        int, typer.Option("--count", "-n", click_type=Count(1), help="How many copies.")
    ] = 1,
    as_json: AsJson = False,
) -> None:
    """Copies of a running VM, each running on from the moment of the fork with the same
    memory, processes and files (the SDK's Sandbox.fork); their names are printed."""
    forks = client().fork_vm(vm, count)
    if as_json:
        print_json(forks)
        return
    for made in forks:
        say(made["name"])


def clone(
    source: Annotated[str, typer.Argument(help="The VM to copy.", autocompletion=vm_names)],
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
def ls(vm: VmName, as_json: AsJson = False) -> None:
    """A VM's snapshots, with the space each takes."""
    snaps = client().list_snapshots(vm)
    if as_json:
        print_json(snaps)
        return
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
def rm(
    vm: VmName,
    names: Annotated[
        list[str], typer.Argument(help="Snapshot names.", autocompletion=snapshot_names)
    ],
) -> None:
    """Delete snapshots and free their space."""

    def remove(name: str) -> str:
        client().remove_snapshot(vm, name)
        return f"snapshot {name} of {vm} is removed"

    each(names, remove)


def register(root: typer.Typer) -> None:
    for command in (pause, resume, clone, fork):
        root.command()(command)
    root.add_typer(app, name="snapshot")
