"""``bungalow cost``: what VMs have cost over a time range, per VM, owner, project or label."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from bungalow.cli.common import AsJson, client
from bungalow.cli.output import print_json, say, table
from bungalow.cli.params import Moment

if TYPE_CHECKING:
    from bungalow.client.shapes import CostRow

By = Annotated[
    str, typer.Option("--by", help="Group by vm, owner, project or label:KEY (e.g. label:team).")
]
Since = Annotated[
    str | None,
    typer.Option(
        "--since",
        click_type=Moment(),
        help="From a date (2026-11-01, 2026-11-01T09:00) or 2h, 1w ago.",
    ),
]
Until = Annotated[
    str | None,
    typer.Option("--until", click_type=Moment(), help="Up to a date or a time ago; now."),
]


def money(amount: float | None, currency: str = "") -> str:
    """``0.0412 USD``; four decimals below 100 so that an hour of a small VM shows."""
    if amount is None:
        return "-"
    text = f"{amount:,.2f}" if abs(amount) >= 100 else f"{amount:.4f}"
    return f"{text} {currency}".strip()


def _hours(value: float) -> str:
    return f"{value:.2f}"


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _cells(row: CostRow) -> list[str]:
    group = row["group"] + (" (removed)" if row.get("removed") else "")
    return [
        group, _hours(row["running_hours"]), _hours(row["stopped_hours"]), money(row["cpu"]),
        money(row["memory"]), money(row["disk"]), money(row["total"]),
    ]  # fmt: skip


def cost(
    by: By = "vm",
    since: Since = None,
    until: Until = None,
    as_json: AsJson = False,
) -> None:
    """Accrued cost: running and stopped hours, CPU, memory and disk (snapshots included)."""
    report = client().costs(by, since or None, until or None)
    if as_json:
        print_json(report)
        return
    heading = report["by"].replace("label:", "label ").upper()
    table(
        [heading, "RUNNING H", "STOPPED H", "CPU", "MEMORY", "DISK", "TOTAL"],
        [*(_cells(row) for row in report["rows"]), _cells(report["total"])],
    )
    say(
        f"{money(report['total']['total'], report['currency'])} from "
        f"{_when(report['since'])} to {_when(report['until'])}"
    )


def register(app: typer.Typer) -> None:
    app.command()(cost)
