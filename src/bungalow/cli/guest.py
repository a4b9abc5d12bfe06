"""Commands that reach into a guest: exec, shell, cp, console.

``exec``, ``shell`` and ``run`` keep bungalow's own failures apart from the
command's status, as ``docker exec`` and ``docker run`` do: 125 when bungalow
could not run the command (bad usage, daemon unreachable, no such VM, a
refusal), 124 when the command's timeout ended it, 128+N when signal N did,
else the command's own status.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from typer.core import TyperCommand

from bungalow.cli.common import VmName, client
from bungalow.cli.output import error
from bungalow.cli.params import Duration
from bungalow.client.results import exit_status, timeout_sentence
from bungalow.errors import BungalowError, UserError

if TYPE_CHECKING:
    from bungalow.client.shapes import ExitEvent


#: Our status when bungalow itself failed to run the command, as ``docker exec`` gives.
OWN_FAILURE = 125


class ExecCommand(TyperCommand):
    """A command that runs a guest command: its usage errors, click's (2) and an option
    value refused with a sentence (cli/params.py, 1), exit 125, so that no status of
    bungalow's own is one the guest command could give."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            with own_failures():
                return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = OWN_FAILURE  # type: ignore[misc]  # click reads it per instance
            raise


@contextlib.contextmanager
def own_failures() -> Iterator[None]:
    """Any bungalow error inside ends the CLI with its sentence and status 125."""
    try:
        yield
    except BungalowError as exc:
        error(exc.message)
        raise typer.Exit(OWN_FAILURE) from None


#: ``--timeout`` of exec and run: how long the guest command may take.
CommandTimeout = Annotated[
    float | None,
    typer.Option(
        "--timeout", click_type=Duration(), help="End the command after 30s, 5m... (status 124)."
    ),
]


def _parse_env(pairs: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"The environment setting {pair!r} is not KEY=VALUE; write it so.")
        env[key] = value
    return env


def write_output(stream: str, data: bytes) -> None:
    """Copy a command's output to ours as it comes: stdout to stdout, stderr to stderr."""
    sink = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
    sink.write(data)
    sink.flush()


def command_status(ending: ExitEvent | None, timeout: float | None) -> int:
    """Our exit status for how a command ended (``exit_status``), saying what needs saying.

    Every exec path ends here: 124 and a sentence for a timeout, 128+N for signal N,
    125 when no status came (bungalow's own failure).
    """
    if ending is None:
        error("The command ended without an exit status; the VM may have stopped.")
        return OWN_FAILURE
    if ending.get("timed_out"):
        error(timeout_sentence(timeout))
    return exit_status(ending)


def stream_exec(name: str, argv: list[str], **options: Any) -> int:
    """Run a command, copy its output as it comes, return its exit status."""
    if not argv:
        raise UserError("No command given; put the command after `--`.")
    for event in client().exec_events(name, argv, **options):
        if event["type"] == "exit":
            return command_status(event, options.get("timeout"))
        write_output(event["type"], event["data"])
    return command_status(None, options.get("timeout"))


def exec_(
    name: VmName,
    command: Annotated[list[str], typer.Argument(help="Command and arguments, after --.")],
    interactive: Annotated[
        bool, typer.Option("--interactive", "-i", help="Pass stdin to the command.")
    ] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Give the command a terminal.")] = False,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, repeatable.")
    ] = None,
    workdir: Annotated[
        str | None, typer.Option("--workdir", "-w", help="Working directory.")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Run as this user.")] = None,
    timeout: CommandTimeout = None,
) -> None:
    """Run a command in a running VM; output streams, the exit status passes through.

    If this command is interrupted (Ctrl-C, a hang-up, killed), the guest command
    ends too: a terminal session (-t) gets SIGHUP as from a terminal that hangs up,
    others SIGTERM, then SIGKILL two seconds later.

    Exit status: the command's own; 124 when --timeout ended it; 128+N when
    signal N did (130: Ctrl-C); 125 when bungalow could not run it (bad usage,
    bungalowd unreachable, no such VM, a refusal).
    """
    options: dict[str, Any] = {"env": _parse_env(env), "cwd": workdir, "user": user}
    if timeout is not None:
        options["timeout"] = timeout
    with own_failures():
        if interactive or tty:
            from bungalow.cli.terminal import interactive_exec

            code = interactive_exec(client(), name, command, tty=tty, **options)
        else:
            code = stream_exec(name, command, **options)
    raise typer.Exit(code)


def shell(
    name: VmName,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Log in as this user.")] = None,
) -> None:
    """An interactive login shell in a running VM; leaving this terminal hangs it up."""
    from bungalow.cli.terminal import interactive_exec

    with own_failures():
        code = interactive_exec(client(), name, ["/bin/bash", "-l"], tty=True, user=user)
    raise typer.Exit(code)


def console(name: VmName) -> None:
    """Attach to the VM's serial console (detach with Ctrl-])."""
    from bungalow.cli.terminal import attach_console

    attach_console(client(), name)


def cp(
    source: Annotated[str, typer.Argument(help="LOCAL_PATH or VM:PATH.")],
    dest: Annotated[str, typer.Argument(help="VM:PATH or LOCAL_PATH.")],
    follow_link: Annotated[
        bool,
        typer.Option(
            "--follow-link", "-L", help="Copy what a link given as SOURCE points to, not the link."
        ),
    ] = False,
) -> None:
    """Copy files, folders and links between this host and a VM, either way.

    As `docker cp`: a file or folder copied onto an existing folder goes inside it,
    onto a new path becomes it; SOURCE ending in /. copies a folder's contents.
    Permission bits travel (set-user-ID, set-group-ID and sticky not out of a VM);
    files belong to whoever receives them (root in the VM, you here).

    Links: a link given as SOURCE is copied as a link, unless -L is given or SOURCE
    ends in / or /. (naming what it points to); links inside folders are copied as
    links, dangling or not, with or without -L.

    Devices, FIFOs and sockets given as SOURCE are refused; inside folders FIFOs
    travel and device files are left out on this host. Single files of /proc and
    /sys copy what reading them gives; folders on those are refused, and inside
    other folders they come empty.
    """
    from bungalow.cli import transfer

    transfer.copy(client(), source, dest, follow=follow_link)


def register(app: typer.Typer) -> None:
    app.command("exec", cls=ExecCommand)(exec_)
    app.command(cls=ExecCommand)(shell)
    app.command()(console)
    app.command()(cp)
