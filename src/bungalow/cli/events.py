"""``bungalow events``: the audit log of what was done to VMs, by whom and why."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from bungalow.cli.common import AsJson, client
from bungalow.cli.complete import vm_names
from bungalow.cli.output import print_json, table
from bungalow.cli.params import Count, Moment


def events(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            click_type=Moment(),
            help="A duration back (1h, 2d, 1w) or a date (2026-11-01).",
        ),
    ] = None,
    vm: Annotated[
        str | None, typer.Option("--vm", help="Only this VM's events.", autocompletion=vm_names)
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", click_type=Count(1), help="At most this many, newest.")
    ] = 100,
    as_json: AsJson = False,
) -> None:
    """What happened to VMs: who or which policy did it, what, why and when."""
    found = client().events_log(vm, since, limit)
    if as_json:
        print_json(found)
        return
    rows = (
        [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"])), e["vm"] or "-",
         e["kind"], e.get("actor") or "-", e["message"], e.get("reason") or "-"]
        for e in found
    )  # fmt: skip
    table(["TIME", "VM", "WHAT", "WHO", "MESSAGE", "WHY"], rows)


def register(app: typer.Typer) -> None:
    app.command()(events)
