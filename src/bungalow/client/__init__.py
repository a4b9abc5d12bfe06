"""client layer: the only code that speaks to bungalowd, and the Python SDK built on it.

- ``routes``: every REST call (method, path, query, body) as a typed ``Call``;
- ``shapes``: the answers as TypedDicts, mirroring the daemon's response models;
- ``wire``: errors, NDJSON events and exec bodies, shared by both clients;
- ``http`` / ``async_http``: ``Client`` and ``AsyncClient`` (a swappable
  ``transport``; the daemon is started on first use when there is none);
- ``interactive``: the websocket sessions (exec with stdin, the console);
- ``results``, ``sandbox_base``, ``sandbox``, ``async_sandbox``: the SDK.

Importing any module of this package first keeps httpx from loading its own
command-line tool, so that both clients pay for httpx alone.
"""

from __future__ import annotations

import sys
import types


def _skip_httpx_command_line() -> None:
    """Keep httpx from importing its own command-line tool.

    ``import httpx`` loads ``httpx._main`` (click, rich, pygments) whenever
    those are installed, as they are here; that is about 70 ms on every
    ``bungalow`` command, and boot-to-exec counts two of them. bungalow never
    runs httpx's tool, so an empty module with its one name takes its place.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    module = types.ModuleType("httpx._main")

    def main() -> None:  # pragma: no cover - httpx's CLI, which bungalow does not ship
        raise SystemExit("httpx's command-line tool is not available inside bungalow.")

    module.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = module


_skip_httpx_command_line()
