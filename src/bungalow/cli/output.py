"""How the CLI prints: tables and progress on stdout, one-sentence errors on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from bungalow.units import format_size, format_span

if TYPE_CHECKING:
    from rich.console import Console

    from bungalow.client.shapes import BuildEvent, ImageInfo

# Rich is imported on first use: `bungalow exec` prints nothing of its own, and
# every command's start-up time counts in boot-to-exec.


@cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def show(renderable: object) -> None:
    """Print a Rich renderable (a table, a panel) on stdout."""
    _console(False).print(renderable)


def say(text: str) -> None:
    """A plain line for the user on stdout (no Rich: it costs start-up time)."""
    print(text, flush=True)


def say_styled(text: str) -> None:
    """A line with Rich markup on stdout."""
    _console(False).print(text)


def error(message: str) -> None:
    if not sys.stderr.isatty():
        print(f"error: {message}", file=sys.stderr)
        return
    _console(True).print(f"[bold red]error:[/] {message}", soft_wrap=True)


def print_json(text: str) -> None:
    _console(False).print_json(text)


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(str(cell) for cell in row))
    _console(False).print(grid)


def age(since: float | None) -> str:
    if not since:
        return "-"
    return format_span(max(0.0, time.time() - since))


def until(when: float | None) -> str:
    """``in 9m`` for a deadline ahead, ``now`` for one passed, ``-`` for none."""
    if not when:
        return "-"
    left = when - time.time()
    return "now" if left <= 0 else "in " + age(time.time() - left)


def size(value: int | None) -> str:
    return format_size(value) if value else "-"


def progress(events: Iterator[BuildEvent], title: str) -> ImageInfo | None:
    """Show build progress events as a bar; the image the ``done`` event brings, if one came."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    done: ImageInfo | None = None
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        console=_console(True),
        transient=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(title, total=1.0, stage="starting")
        for event in events:
            if event["type"] == "progress":
                bar.update(task, completed=float(event["fraction"]), stage=event["stage"])
            elif event["type"] == "done":
                bar.update(task, completed=1.0, stage="done")
                done = event["image"]
    return done
