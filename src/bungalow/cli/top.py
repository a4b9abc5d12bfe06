"""``bungalow top``: live per-VM CPU, steal, memory, disk and network rates."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from bungalow.cli.common import client
from bungalow.cli.output import on_terminal, print_json, show, size, table
from bungalow.cli.params import Duration

if TYPE_CHECKING:
    from bungalow.client.shapes import VmMetrics

COLUMNS = ["VM", "CPU", "STEAL", "MEMORY", "DISK RD/s", "DISK WR/s", "IOPS", "NET RX/s",
           "NET TX/s", ""]  # fmt: skip


def _row(entry: VmMetrics) -> list[str]:
    rates = entry["rates"]
    if not rates:
        return [entry["vm"], "...", "", "", "", "", "", "", "", ""]
    iops = rates["block_rd_reqs"] + rates["block_wr_reqs"]
    return [
        entry["vm"],
        f"{rates['cpu'] * 100:.0f}%",
        f"{rates['steal'] * 100:.0f}%",
        size(int(rates["rss"])),
        _per_second(rates["block_rd_bytes"]),
        _per_second(rates["block_wr_bytes"]),
        f"{iops:.0f}",
        _per_second(rates["net_rx_bytes"]),
        _per_second(rates["net_tx_bytes"]),
        _noisy(entry),
    ]


def _per_second(value: float) -> str:
    """Bytes a second: ``2K``, ``512B``, and ``0`` below one (``size`` would show ``-``)."""
    return size(int(value)) if value >= 1 else "0"


def _noisy(entry: VmMetrics) -> str:
    """``NOISY cpu,disk``, and ``held`` once the daemon's policy throttles it."""
    words = []
    if entry["noisy"]:
        words.append("NOISY " + ",".join(entry.get("noisy_for", [])))
    if entry.get("throttled"):
        words.append("held " + ",".join(entry["throttled"]))
    return " ".join(words)


def top(
    once: Annotated[bool, typer.Option("--once", help="Print one table and exit.")] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", "-n", click_type=Duration(), help="Time between: 2s, 500ms."),
    ] = 2.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the metrics once as JSON (keys as in the API).")
    ] = False,
) -> None:
    """Live per-VM CPU (of one host CPU), steal, memory, disk and network; NOISY marks a VM
    taking most of the CPU or disk while others wait, "held" one the daemon throttles.
    Into a pipe, or with --once, one table is printed (plain columns in a pipe)."""
    api = client()
    if as_json:
        print_json(api.metrics())
        return
    if not on_terminal():
        table(COLUMNS, [_row(entry) for entry in api.metrics()])
        return

    from rich.live import Live
    from rich.table import Table

    def render() -> Table:
        grid = Table(box=None, pad_edge=False, header_style="bold")
        for column in COLUMNS:
            grid.add_column(column, justify="left" if column == "VM" else "right")
        for entry in api.metrics():
            grid.add_row(
                *_row(entry), style="red" if entry["noisy"] or entry.get("throttled") else None
            )
        return grid

    if once:
        show(render())
        return
    with Live(render(), auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(render(), refresh=True)


def register(app: typer.Typer) -> None:
    app.command()(top)
