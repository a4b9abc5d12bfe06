"""What the sync and the async client share about bungalowd's wire format.

Both clients speak the same HTTP: errors as ``{"error": {"code", "message"}}``,
NDJSON event streams whose ``error`` event ends the stream, exec bodies with
base64 stdin. Only how bytes are read differs (``read`` or ``await aread``), so
everything after the read lives here, once, with no I/O of its own.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast
from urllib.parse import unquote_to_bytes

from bungalow.errors import BungalowError, DaemonError, error_from_code, error_from_status

if TYPE_CHECKING:
    import httpx

    from bungalow.client.shapes import ExecEvent
    from bungalow.paths import DataDir

#: Any host name works over a Unix socket; this one reads well in logs.
BASE_URL = "http://bungalowd"

Chunks = TypeVar("Chunks")


def auth_headers(token: str | None) -> dict[str, str]:
    """The header that scopes requests to one project; ``BUNGALOW_TOKEN`` by default."""
    token = token if token is not None else os.environ.get("BUNGALOW_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def error_in_body(body: bytes) -> BungalowError | None:
    """The error a daemon's JSON body names (``{"error": {"code", "message"}}``), if any."""
    try:
        error = json.loads(body)["error"]
        return error_from_code(str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return None


def error_for(response: httpx.Response) -> BungalowError:
    """The exception a failed response stands for; its body must have been read.

    A body without a code (a proxy's page, a crash) gives the class of the status.
    """
    found = error_in_body(response.content)
    if found is not None:
        return found
    text = response.text.strip()[:200]
    return error_from_status(
        response.status_code,
        f"bungalowd answered {response.status_code}" + (f": {text}" if text else "."),
    )


def connection_lost(data: DataDir, exc: Exception) -> DaemonError:
    return DaemonError(f"Lost the connection to bungalowd ({exc}); see {data.daemon_log}.")


#: Methods a daemon may be asked twice without a second effect.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


def worth_retrying(method: str, exc: Exception) -> bool:
    """Whether a request that failed with ``exc`` may be sent again to a new daemon.

    A refused connection carried nothing, so any request may; one lost after it was sent
    (the daemon killed meanwhile, or dying as it was reached) may have been acted on, so
    only a read that changes nothing is sent again.
    """
    import httpx  # the wire module itself loads nothing until a client does

    if isinstance(exc, httpx.ConnectError):
        return True
    return method.upper() in IDEMPOTENT and isinstance(
        exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError
    )


def response_value(response: httpx.Response) -> Any:
    """A read response's JSON, text, or None when it has no body."""
    if response.status_code == 204 or not response.content:
        return None
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.text


def raise_event_error(event: Mapping[str, Any]) -> None:
    """Raise the error an ``{"type": "error", "code", "message"}`` event reports."""
    if event.get("type") == "error":
        raise error_from_code(str(event.get("code")), str(event.get("message")))


def parse_event(line: str) -> dict[str, Any] | None:
    """One NDJSON line as an event (None for a blank line); an ``error`` event raises."""
    if not line.strip():
        return None
    event: dict[str, Any] = json.loads(line)
    raise_event_error(event)
    return event


def exec_body(argv: list[str], stdin: bytes | None, options: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"argv": argv, **options}
    if stdin is not None:
        body["stdin"] = base64.b64encode(stdin).decode()
    return body


def decode_exec_event(event: dict[str, Any]) -> ExecEvent:
    """An exec event (stdout, stderr, exit) with its output turned from base64 into bytes."""
    if "data" in event:
        event["data"] = base64.b64decode(event["data"])
    return cast("ExecEvent", event)


@dataclass(frozen=True)
class Download(Generic[Chunks]):
    """What a download answered: ``kind`` is ``file``, ``dir`` or ``link``.

    ``chunks`` are a file's bytes or a folder's tar (its members ``./...``; empty for
    a link); ``mode`` a file's permission bits; ``target`` a link's target.
    """

    kind: str
    chunks: Chunks
    mode: int | None = None
    target: str | None = None


def download_of(headers: Mapping[str, str], chunks: Chunks) -> Download[Chunks]:
    """The :class:`Download` a response with these headers and body carries."""
    mode = headers.get("x-bungalow-mode")
    target = headers.get("x-bungalow-link-target")
    return Download(
        kind=headers.get("x-bungalow-kind", "file"),
        chunks=chunks,
        mode=int(mode, 8) if mode else None,
        target=None if target is None else os.fsdecode(unquote_to_bytes(target)),
    )
