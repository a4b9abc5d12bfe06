"""What every sub-command needs: a client to the daemon, started on demand."""

from __future__ import annotations

from functools import cache

from bungalow.client.http import Client


@cache
def client() -> Client:
    return Client()
