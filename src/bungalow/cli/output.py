"""How the CLI prints: tables and progress on stdout, one-sentence errors on stderr.

On a terminal, tables are drawn by Rich (bold headers, fitted to its width). Into a pipe
or a file they are plain text, one line a row and never wrapped, in columns padded with
spaces as ``docker ps`` prints them, so that ``bungalow ls | grep web`` and ``awk`` work.
JSON (``--json``) is colourless and indented by two spaces when piped.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from bungalow.units import format_size, format_span

if TYPE_CHECKING:
    from rich.console import Console

    from bungalow.client.shapes import BuildEvent, ImageInfo, WaitDone, WaitEvent

# Rich is imported on first use: `bungalow exec` prints nothing of its own, and
# every command's start-up time counts in boot-to-exec.

#: Spaces between two columns of a plain table (``docker ps`` has three).
GAP = 3


@cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def on_terminal() -> bool:
    """Whether stdout is a terminal (a person reading) rather than a pipe or a file."""
    return sys.stdout.isatty()


def show(renderable: object) -> None:
    """Print a Rich renderable (a table, a panel) on stdout."""
    _console(False).print(renderable)


def say(text: str) -> None:
    """A plain line for the user on stdout (no Rich: it costs start-up time)."""
    print(text, flush=True)


def say_styled(text: str) -> None:
    """A line with Rich markup on stdout (its markup dropped, never wrapped, when piped)."""
    if on_terminal():
        _console(False).print(text)
    else:
        from rich.text import Text

        say(Text.from_markup(text).plain)


#: The API's sentence for a refused request field (daemon/api/refusals.py): ``The request's
#: cpus 512 is not valid: give a whole number from 1 to 255; see GET /openapi.json.``
_FIELD_REFUSAL = re.compile(
    r"The request's (?:query parameter )?([a-z][a-z0-9_]*)(?:\[\d+\])? (.*);"
    r" see GET /openapi\.json\."
)


#: The words of the command line being run (cli/main.py sets them), for :func:`in_cli_terms`.
command_line: list[str] = []


def in_cli_terms(message: str, words: list[str] | None = None) -> str:
    """An API refusal of a top-level field or a query parameter said in the CLI's terms: as
    the option, when the command line ``words`` (default :data:`command_line`) gave it one
    (``--cpus 512 is not valid: give a whole number from 1 to 255.``), else as the value it
    is (``The name "Bad" is not valid: ...``: an argument, or a value the CLI sent itself).
    Any other message unchanged."""
    found = _FIELD_REFUSAL.fullmatch(message)
    if found is None:
        return message
    option = "--" + found[1].replace("_", "-")
    given = command_line if words is None else words
    if any(word == option or word.startswith(option + "=") for word in given):
        return f"{option} {found[2]}."
    return f"The {found[1].replace('_', ' ')} {found[2]}."


def error(message: str) -> None:
    """``error: MESSAGE`` on stderr, red on a terminal (an API field refusal said in the
    CLI's terms, :func:`in_cli_terms`)."""
    message = in_cli_terms(message)
    if not sys.stderr.isatty():
        print(f"error: {message}", file=sys.stderr)
        return
    _console(True).print(f"[bold red]error:[/] {message}", soft_wrap=True)


def warn(message: str) -> None:
    """``warning: MESSAGE`` on stderr: something the user should know, not a failure."""
    if not sys.stderr.isatty():
        print(f"warning: {message}", file=sys.stderr)
        return
    _console(True).print(f"[bold yellow]warning:[/] {message}", soft_wrap=True)


def print_json(value: object) -> None:
    """``value`` as JSON on stdout: coloured on a terminal, plain when piped; indented by two
    spaces either way. The value is an answer of the API (client/shapes.py), unchanged."""
    text = json.dumps(value, indent=2)
    if on_terminal():
        _console(False).print_json(text)
    else:
        say(text)


def table(columns: Sequence[str], rows: Iterable[Iterable[Any]]) -> None:
    """Rows under their column names: Rich on a terminal, plain columns in a pipe."""
    cells = [[str(cell) for cell in row] for row in rows]
    if not on_terminal():
        for line in plain_table(columns, cells):
            say(line)
        return
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column)
    for row in cells:
        grid.add_row(*row)
    _console(False).print(grid)


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a table as ``docker ps`` prints into a pipe: each column as wide as its
    widest cell, :data:`GAP` spaces between columns, no trailing spaces, no wrapping."""
    widths = [
        max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)
    ]
    return [
        (" " * GAP)
        .join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        .rstrip()
        for line in [list(columns), *rows]
    ]


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


def waiting(events: Iterator[WaitEvent], name: str) -> WaitDone | None:
    """Say each change while a VM's services start (one line each, on stderr); the
    ``done`` event, if one came (an ``error`` event raises in the iterator)."""
    console = _console(True)
    for event in events:
        if event["type"] == "progress":
            jobs = event["jobs"]
            console.print(
                f"{name}: systemd {event['state']}, {jobs} job{'s' * (jobs != 1)} queued "
                f"({event['elapsed']:.0f}s)",
                highlight=False,
            )
        elif event["type"] == "done":
            return event
    return None


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
