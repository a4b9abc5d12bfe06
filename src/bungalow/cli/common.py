"""What every sub-command needs: a client to the daemon, started on demand."""

from __future__ import annotations

from functools import cache
from typing import Any

from bungalow.client.http import Client


@cache
def client() -> Client:
    return Client()


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None), as an API request body."""
    return {key: value for key, value in options.items() if value is not None}
