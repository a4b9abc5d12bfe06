"""What every sub-command needs: a client to the daemon, made on first use.

How the client is made is decided once, by :func:`bungalow.cli.main.main`
(``connect``): it travels to the commands in click's context object, so a test
runs the whole CLI in-process against an ``httpx.MockTransport`` by passing
``connect=lambda: Client(transport=...)``. By default it is a
:class:`~bungalow.client.http.Client` to ``$BUNGALOW_HOME``'s daemon, started
if it is not running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

import click
import typer

from bungalow.cli.complete import vm_names
from bungalow.cli.output import error, say
from bungalow.client.http import Client
from bungalow.errors import BungalowError

#: Makes the client a command talks through.
Connect = Callable[[], Client]

#: A VM's name as an argument, completed from the daemon's VMs (cli/complete.py).
VmName = Annotated[str, typer.Argument(help="VM name.", autocompletion=vm_names)]
#: Several VMs' names, for the commands that act on each in turn (:func:`each`).
VmNames = Annotated[list[str], typer.Argument(help="VM names.", autocompletion=vm_names)]

#: ``--json`` of every listing, ``inspect`` and ``host info``: the API's answer as it is, its
#: keys those of the API's schema (``GET /openapi.json``, client/shapes.py).
AsJson = Annotated[
    bool, typer.Option("--json", help="Print the daemon's answer as JSON (keys as in its API).")
]


class Connection:
    """The client of one run of the CLI: made when a command first needs it, then kept."""

    def __init__(self, connect: Connect = Client) -> None:
        self._connect = connect
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def client() -> Client:
    """The client of the command being run (see the module's docstring)."""
    return click.get_current_context().ensure_object(Connection).client()


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None), as an API request body."""
    return {key: value for key, value in options.items() if value is not None}


def each(names: Iterable[str], act: Callable[[str], str | None]) -> None:
    """Do ``act`` to every name in turn, printing the line it returns (None: nothing).

    How every command taking several VMs (or images, snapshots) behaves when one fails, as
    ``docker stop a b c`` does: the others are still done, each failure is one sentence on
    stderr (``error: ...``: the daemon's sentence, which names the VM), and the command
    exits 1 once all were tried (typer.Exit). One name fails alike.
    """
    failed = False
    for name in names:
        try:
            line = act(name)
        except BungalowError as exc:
            error(exc.message)
            failed = True
            continue
        if line is not None:
            say(line)
    if failed:
        raise typer.Exit(1)
