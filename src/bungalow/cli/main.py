"""The ``bungalow`` command: one Typer app, sub-commands in one module per group.

Every :class:`~bungalow.errors.BungalowError` ends here as one line on stderr
and exit code 1; nothing a user can cause prints a traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bungalow.cli import (
    cost,
    events,
    guest,
    host,
    images,
    leases,
    limits,
    projects,
    snapshots,
    sprawl,
    top,
    vms,
)  # fmt: skip
from bungalow.cli.common import Connect, Connection
from bungalow.cli.output import error
from bungalow.client.http import Client
from bungalow.errors import BungalowError

app = typer.Typer(
    name="bungalow",
    help="Real virtual machines on this host.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(asked: bool) -> None:
    if asked:
        from bungalow import __version__

        print(f"bungalow {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print the CLI's version and exit."
        ),
    ] = False,
) -> None:
    """Real virtual machines on this host. `bungalow host info` shows the daemon's version."""


vms.register(app)
guest.register(app)
snapshots.register(app)
limits.register(app)
top.register(app)
projects.register(app)
cost.register(app)
leases.register(app)
sprawl.register(app)
events.register(app)
app.add_typer(images.app, name="image", help="Build, import, list and remove images.")
app.add_typer(host.app, name="host", help="What this host has and how it runs VMs.")


def main(argv: list[str] | None = None, *, connect: Connect = Client) -> int:
    """Run the ``bungalow`` command with ``argv`` (default: the process's); its exit status.

    ``connect`` makes the client the commands talk through (cli/common.py).
    """
    connection = Connection(connect)
    try:
        return _run(argv, connection)
    finally:
        connection.close()


def _run(argv: list[str] | None, connection: Connection) -> int:
    try:
        result = app(args=argv, standalone_mode=False, obj=connection)
    except BungalowError as exc:
        error(exc.message)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 130
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
