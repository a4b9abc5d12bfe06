"""Commands that reach into a guest: exec, shell, cp, console."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bungalow.cli.common import VmName, client
from bungalow.cli.output import error
from bungalow.cli.params import Duration
from bungalow.client.results import exit_status, timeout_sentence
from bungalow.errors import UserError

if TYPE_CHECKING:
    from bungalow.client.shapes import ExitEvent


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

    Both exec paths end here: 124 and a sentence for a timeout, 128+N for signal N.
    """
    if ending is None:
        error("The command ended without an exit status; the VM may have stopped.")
        return 1
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
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", click_type=Duration(), help="Kill the command after 30s, 5m..."),
    ] = None,
) -> None:
    """Run a command in a running VM; output streams, the exit code passes through."""
    options: dict[str, Any] = {"env": _parse_env(env), "cwd": workdir, "user": user}
    if timeout is not None:
        options["timeout"] = timeout
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
    """An interactive login shell in a running VM."""
    from bungalow.cli.terminal import interactive_exec

    code = interactive_exec(client(), name, ["/bin/bash", "-l"], tty=True, user=user)
    raise typer.Exit(code)


def console(name: VmName) -> None:
    """Attach to the VM's serial console (detach with Ctrl-])."""
    from bungalow.cli.terminal import attach_console

    attach_console(client(), name)


def cp(
    source: Annotated[str, typer.Argument(help="LOCAL_PATH or VM:PATH.")],
    dest: Annotated[str, typer.Argument(help="VM:PATH or LOCAL_PATH.")],
) -> None:
    """Copy files and folders between this host and a VM, either way."""
    from bungalow.cli import transfer

    transfer.copy(client(), source, dest)


def register(app: typer.Typer) -> None:
    app.command("exec")(exec_)
    app.command()(shell)
    app.command()(console)
    app.command()(cp)
