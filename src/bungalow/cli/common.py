"""What every sub-command needs: a client to the daemon, made on first use.

How the client is made is decided once, by :func:`bungalow.cli.main.main`
(``connect``): it travels to the commands in click's context object, so a test
runs the whole CLI in-process against an ``httpx.MockTransport`` by passing
``connect=lambda: Client(transport=...)``. By default it is a
:class:`~bungalow.client.http.Client` to ``$BUNGALOW_HOME``'s daemon, started
if it is not running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from bungalow.client.http import Client

#: Makes the client a command talks through.
Connect = Callable[[], Client]


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
