"""Sprawl: ``sprawl [--apply]``, ``suspend`` and ``restore-deleted``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from bungalow.cli.common import AsJson, VmNames, client, each
from bungalow.cli.leases import span
from bungalow.cli.output import print_json, say, size, table
from bungalow.errors import UserError

if TYPE_CHECKING:
    from bungalow.client.shapes import SprawlFinding


def _money(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def sprawl(
    apply: Annotated[
        bool, typer.Option("--apply", help="Carry out the action listed for each VM.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """VMs that look forgotten: why each is listed, how long, what it costs, what would be done."""
    api = client()
    findings = api.sprawl()
    if as_json and not apply:
        print_json(findings)
        return
    if not as_json:
        _show(findings)
    if not apply:
        return
    results = api.apply_sprawl()
    if as_json:
        print_json(results)
        return
    failed = False
    for result in results:
        if "error" in result:
            failed = True
            say(f"{result['vm']}: {result['action']} failed: {result['error']}")
        else:
            say(f"{result['vm']}: {result['result']}")
    if failed:
        raise typer.Exit(1)


def _show(findings: list[SprawlFinding]) -> None:
    if not findings:
        say("No sprawl: every VM has a use or a lease in order.")
        return
    rows = (
        [f["vm"], f["state"], f["kind"], f["why"], span(f["seconds"]),
         _money(f["cost_per_hour"], "/h"), _money(f["cost_so_far"]), size(f.get("memory_held")),
         f["action"] + (" (auto)" if f["automatic"] and f["action"] != "none" else "")]
        for f in findings
    )  # fmt: skip
    table(["VM", "STATE", "KIND", "WHY", "FOR", "COST/H", "COST", "HOLDS", "ACTION"], rows)


def suspend(names: VmNames) -> None:
    """Save running VMs whole and end their QEMU, freeing memory and CPU; `start` resumes them."""
    each(names, lambda name: f"{client().suspend_vm(name)['name']} is suspended")


def restore_deleted(
    name: Annotated[str | None, typer.Argument(help="The deleted VM's name.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the VMs that can come back.")] = False,
    as_json: AsJson = False,
) -> None:
    """Bring back a VM removed by snapshot-and-delete, within its retention time."""
    api = client()
    if list_ or name is None:
        if name is not None:
            raise UserError("Give either a VM name or --list, not both.")
        deleted = api.deleted_vms()
        if as_json:
            print_json(deleted)
            return
        rows = (
            [d["name"], d["state"], d.get("owner") or "-", d.get("project") or "-",
             span(time.time() - d["deleted"]) + " ago", span(d["keep_until"] - time.time())]
            for d in deleted
        )  # fmt: skip
        table(["NAME", "WAS", "OWNER", "PROJECT", "DELETED", "KEPT FOR"], rows)
        return
    if as_json:
        raise UserError("--json goes with --list: restore-deleted --list --json.")
    vm = api.restore_deleted(name)
    say(f"{vm['name']} is back and {vm['state']}")


def register(app: typer.Typer) -> None:
    app.command()(sprawl)
    app.command()(suspend)
    app.command("restore-deleted")(restore_deleted)
