"""The ``bungalow`` command: one Typer app, sub-commands in one module per group.

Every :class:`~bungalow.errors.BungalowError` ends here as one line on stderr
and exit code 1; nothing a user can cause prints a traceback.

Typer turns every registered command into a click command, options and all,
each time it runs: some 40 commands, about 30 ms of every ``bungalow`` call.
:func:`main` runs a root group that builds only the sub-command being run
(:class:`OnDemandGroup`); ``--help`` still builds them all to list them.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any, NoReturn

import click
import typer
import typer.main
from typer.core import TyperGroup
from typer.models import CommandInfo, TyperInfo

from bungalow.cli import (
    cost,
    dashboard,
    events,
    guest,
    host,
    images,
    leases,
    limits,
    media,
    network,
    output,
    projects,
    screen,
    snapshots,
    sprawl,
    ssh,
    top,
    vms,
)  # fmt: skip
from bungalow.cli.common import Connect, Connection
from bungalow.cli.output import error
from bungalow.client.http import Client
from bungalow.errors import BungalowError


class OnDemandGroup(TyperGroup):
    """A Typer group that builds a sub-command's click command when it is looked up.

    With ``source`` None it is an ordinary TyperGroup (what ``app()`` builds);
    :func:`root_command` sets it to the app whose registrations it builds from.
    """

    source: typer.Typer | None = None

    def list_commands(self, ctx: click.Context) -> list[str]:
        if self.source is None:
            return super().list_commands(ctx)
        return list(_registered(self.source))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if self.source is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        info = _registered(self.source).get(cmd_name)
        if info is None:
            return None
        self.commands[cmd_name] = _build(self.source, info)
        return self.commands[cmd_name]


def _registered(source: typer.Typer) -> dict[str, CommandInfo | TyperInfo]:
    """The app's commands and sub-apps by the names typer gives them, in its order."""
    found: dict[str, CommandInfo | TyperInfo] = {}
    for command in source.registered_commands:
        if command.callback is not None:
            found[command.name or typer.main.get_command_name(command.callback.__name__)] = command
    for group in source.registered_groups:
        if isinstance(group.name, str):
            found[group.name] = group
    return found


def _build(source: typer.Typer, info: CommandInfo | TyperInfo) -> click.Command:
    settings: dict[str, Any] = {
        "pretty_exceptions_short": source.pretty_exceptions_short,
        "rich_markup_mode": source.rich_markup_mode,
    }
    if isinstance(info, CommandInfo):
        return typer.main.get_command_from_info(info, **settings)
    return typer.main.get_group_from_info(
        info, suggest_commands=source.suggest_commands, **settings
    )


def root_command(source: typer.Typer) -> OnDemandGroup:
    """The click group of ``source`` with its settings and none of its commands built yet."""
    settings_only = typer.Typer()
    settings_only.info = source.info
    settings_only.registered_callback = source.registered_callback
    group = typer.main.get_group(settings_only)
    if not isinstance(group, OnDemandGroup):
        raise TypeError("the app must be made with cls=OnDemandGroup")
    group.source = source
    if source._add_completion:  # as typer.main.get_command: its shell classes, and the options
        group.params.extend(typer.main.get_install_completion_arguments())
    return group


app = typer.Typer(
    name="bungalow",
    help="Real virtual machines on this host.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=OnDemandGroup,
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
network.register(app)
cost.register(app)
leases.register(app)
sprawl.register(app)
events.register(app)
ssh.register(app)
screen.register(app)
dashboard.register(app)
app.add_typer(images.app, name="image", help="Build, import, list and remove images.")
app.add_typer(media.app, name="media", help="Eject and insert an installer VM's CD.")
app.add_typer(host.app, name="host", help="What this host has and how it runs VMs.")


def main(argv: list[str] | None = None, *, connect: Connect = Client) -> int:
    """Run the ``bungalow`` command with ``argv`` (default: the process's); its exit status.

    ``connect`` makes the client the commands talk through (cli/common.py).
    """
    connection = Connection(connect)
    output.command_line[:] = sys.argv[1:] if argv is None else argv
    try:
        return _run(argv, connection)
    finally:
        connection.close()


def _run(argv: list[str] | None, connection: Connection) -> int:
    try:
        result = root_command(app).main(
            args=argv, prog_name="bungalow", standalone_mode=False, obj=connection
        )
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
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return result if isinstance(result, int) else 0


def run() -> NoReturn:
    """The ``bungalow`` program: :func:`main` on the process's arguments, then exit.

    The exit skips the interpreter's orderly shutdown (each module torn down, a
    last garbage collection: about 30 ms of every call), which nothing needs once
    :func:`main` has returned: its client is closed and the output is flushed here.
    A thread still forwarding stdin ends with the process.
    """
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone (`bungalow ls | head`), or closed
            status = status or 1
    os._exit(status)


if __name__ == "__main__":
    run()
