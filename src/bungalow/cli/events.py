"""``bungalow events``: the audit log of what was done to VMs, by whom and why."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from bungalow.cli.common import client
from bungalow.cli.output import print_json, table


def events(
    since: Annotated[
        str | None, typer.Option("--since", help="A duration back (1h, 2d) or a date (2026-11-01).")
    ] = None,
    vm: Annotated[str | None, typer.Option("--vm", help="Only this VM's events.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many, newest.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What happened to VMs: who or which policy did it, what, why and when."""
    found = client().events_log(vm, since, limit)
    if as_json:
        print_json(json.dumps(found))
        return
    rows = (
        [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"])), e["vm"] or "-",
         e["kind"], e.get("actor") or "-", e["message"], e.get("reason") or "-"]
        for e in found
    )  # fmt: skip
    table(["TIME", "VM", "WHAT", "WHO", "MESSAGE", "WHY"], rows)


def register(app: typer.Typer) -> None:
    app.command()(events)
