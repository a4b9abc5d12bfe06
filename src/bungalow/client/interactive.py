"""Interactive sessions over bungalowd's websockets: an exec with its stdin open, and the console.

The websocket protocol lives here and nowhere else; a caller (the CLI) sends
input and draws the output it is handed:

- exec (``/v1/vms/NAME/exec/ws``): the first frame is the request as JSON (the
  daemon's ``ExecRequest``: argv, env, cwd, user, timeout, tty, rows, cols);
  then binary frames are stdin and text frames control (``stdin_close``,
  ``resize``). The daemon answers with JSON text frames: ``stdout`` and
  ``stderr`` (base64), one ``exit``, or an ``error``.
- console (``/v1/vms/NAME/console``): bytes both ways; a text frame is an error.

A refused session ends as one :mod:`bungalow.errors` class with one sentence,
however the daemon refused it:

- an ``error`` frame, then a close with code 4000 + the HTTP status: the frame's class;
- a close with code 4xxx and no frame: the class of the status (4404: not found);
- the handshake answered with an HTTP status, with or without a JSON error
  body (older daemons: uvicorn answers 403 to a websocket closed before it was accepted).

Input may be sent from another thread than the one reading the output; input
sent after the session ended is dropped, as the output says how it ended.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Self

from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
)
from websockets.sync.client import ClientConnection, unix_connect

from bungalow.client import wire
from bungalow.client.results import ExecChunk, ExecDeadline, overdue_exit
from bungalow.client.shapes import ExitEvent
from bungalow.errors import BungalowError, DaemonError, error_from_status

if TYPE_CHECKING:
    from bungalow.client.http import Client

#: What to check when a refusal names no reason, by HTTP status.
_HINTS = {
    401: "the API token is not valid; check BUNGALOW_TOKEN",
    403: "check the VM's name with `bungalow ls`, and that your API token may use it",
    404: "check the VM's name with `bungalow ls`",
}


def refusal_error(status: int, what: str, how: str, body: bytes | None = None) -> BungalowError:
    """The error of a session bungalowd refused with HTTP ``status``.

    ``how`` says how the status came (``HTTP 403``, ``close code 4404``); a JSON
    error ``body`` wins over the status, as it names the exact class and sentence.
    """
    named = wire.error_in_body(body) if body else None
    if named is not None:
        return named
    hint = _HINTS.get(status, "see bungalowd's log")
    return error_from_status(status, f"bungalowd refused {what} ({how}); {hint}.")


def closed_error(code: int, reason: str, what: str) -> BungalowError:
    """The error of a websocket closed with ``code`` and ``reason`` (not a normal end).

    4000 + an HTTP status is a refusal of that status (its reason, if any, is the
    sentence); any other code means the session broke off.
    """
    if 4000 <= code < 5000:
        status = code - 4000
        if reason:
            return error_from_status(status, reason)
        return refusal_error(status, what, f"close code {code}")
    return DaemonError(f"bungalowd broke off {what} (close code {code}); see its log.")


class Session:
    """One websocket to bungalowd, open once constructed; close it (or use ``with``)."""

    def __init__(self, client: Client, path: str, *, what: str) -> None:
        self._what = what
        self._connection = _connect(client, path, what)

    def send_input(self, data: bytes) -> None:
        """Bytes for the guest's stdin (or console); dropped once the session has ended."""
        with contextlib.suppress(ConnectionClosed):
            self._connection.send(data)

    def close(self) -> None:
        """End the session; the output iterator then ends too."""
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send_text(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            self._connection.send(json.dumps(message))

    def _frames(self, deadline: ExecDeadline | None = None) -> Iterator[str | bytes]:
        """Frames until the session ends; a close that carries a refusal raises it.

        TimeoutError once ``deadline`` passes."""
        wait = deadline or ExecDeadline(None)
        try:
            while True:
                yield self._connection.recv(wait.remaining())
        except ConnectionClosedOK:
            return
        except ConnectionClosedError as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
            raise closed_error(code, reason, self._what) from None

    def _event(self, frame: str | bytes) -> dict[str, Any]:
        """A JSON text frame as an event; an ``error`` event raises."""
        try:
            event = json.loads(frame)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            raise DaemonError(
                f"bungalowd sent a frame that is not a JSON event during {self._what}: "
                f"{frame[:60]!r}."
            )
        wire.raise_event_error(event)
        return event


def _connect(client: Client, path: str, what: str) -> ClientConnection:
    try:
        # legacy=True: connected now, as a session object that outlives this call.
        return unix_connect(
            str(client.socket_path),
            f"ws://bungalowd{path}",
            legacy=True,
            max_size=None,
            additional_headers=client.headers,
        )
    except InvalidStatus as exc:
        response = exc.response
        status = response.status_code
        raise refusal_error(status, what, f"HTTP {status}", bytes(response.body)) from None
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise wire.connection_lost(client.data, exc) from None


class ExecSession(Session):
    """A command started with its stdin open: send input, read output, then ``exit``.

    Closing the session (or this process ending) closes the websocket, and bungalowd
    then ends the command: SIGHUP to a terminal session, as a terminal that hangs up
    sends, SIGTERM otherwise, SIGKILL a grace later. With a ``timeout`` in the request
    the output ends by then plus :data:`~bungalow.client.results.CLIENT_SLACK`
    whatever the daemon does, with a timed-out exit.
    """

    exit: ExitEvent | None
    """How the command ended, once :meth:`output` is exhausted; None if it never said."""

    def __init__(self, client: Client, path: str, request: dict[str, Any], *, what: str) -> None:
        super().__init__(client, path, what=what)
        self.exit = None
        self._deadline = ExecDeadline(request.get("timeout"))
        self._send_text(request)

    def close_stdin(self) -> None:
        """The command reads end-of-file once the input sent so far is read."""
        self._send_text({"type": "stdin_close"})

    def resize(self, rows: int, cols: int) -> None:
        """The command's terminal is now ``rows`` by ``cols`` characters."""
        self._send_text({"type": "resize", "rows": rows, "cols": cols})

    def output(self) -> Iterator[ExecChunk]:
        """The command's output as it comes, until it exits (then :attr:`exit` is set).

        Raises the :mod:`bungalow.errors` class of an error the daemon reports.
        """
        try:
            for frame in self._frames(self._deadline):
                event = wire.decode_exec_event(self._event(frame))
                if event["type"] == "exit":
                    self.exit = event
                    return
                yield ExecChunk(event["type"], event["data"])
        except TimeoutError:
            self.close()
            self.exit = overdue_exit()


class ConsoleSession(Session):
    """The VM's serial console: bytes typed in, bytes printed out."""

    def output(self) -> Iterator[bytes]:
        """What the console prints, until the session ends (closed by either side)."""
        for frame in self._frames():
            if isinstance(frame, bytes):
                yield frame
            else:
                self._event(frame)
