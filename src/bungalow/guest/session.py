"""Streams on the host side of an agent channel: one per exec or file transfer.

A :class:`Stream` is the channel's record of one request id: the messages the
agent sent for it, queued for whoever consumes them, and the credit for the
data the host sends on it. :class:`ExecSession` is the public face of an
exec's stream.
"""

from __future__ import annotations

import asyncio
import signal as signals
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bungalow.errors import AgentError, BungalowError, GuestFileNotFoundError, UserError
from bungalow.guest import protocol

#: Seconds past a command's timeout and kill grace after which the host stops waiting
#: for the agent to report its end, cancels it and reports the timeout itself.
EXIT_SLACK = 5.0

#: The exit the host reports for a command whose agent did not report one in time.
_OVERDUE: dict[str, Any] = {
    "type": protocol.EV_EXIT,
    "code": None,
    "signal": None,
    "timed_out": True,
}

_ERROR_CLASSES: dict[str, type[BungalowError]] = {
    protocol.ERR_NOT_FOUND: GuestFileNotFoundError,
    protocol.ERR_PERMISSION: UserError,
    protocol.ERR_INVALID: UserError,
    protocol.ERR_FAILED: AgentError,
}


def error_from_message(message: dict[str, Any]) -> BungalowError:
    """The bungalow error for an agent's error event."""
    cls = _ERROR_CLASSES.get(message.get("code", ""), AgentError)
    return cls(str(message.get("message") or "The guest agent reported an unexplained error."))


class Outbox(Protocol):
    """What a stream needs from its channel."""

    async def _send(self, message: dict[str, Any]) -> None: ...

    def _send_nowait(self, message: dict[str, Any]) -> None: ...

    def _forget(self, request_id: int) -> None: ...


class Stream:
    """Messages for one request id, and the credit for data sent on it."""

    def __init__(self, outbox: Outbox, request_id: int) -> None:
        self.outbox = outbox
        self.id = request_id
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._failure: BungalowError | None = None  # an error event, or the channel lost
        self._ended = False  # the agent sent its last message for this id
        self._in_flight = 0  # bytes sent to the agent and not yet acknowledged
        self._credit = asyncio.Event()
        self._unacked = 0  # bytes received and consumed but not yet acknowledged

    @property
    def ended(self) -> bool:
        """The agent sent its last message for this id, or the stream was cancelled."""
        return self._ended

    def feed(self, message: dict[str, Any]) -> None:
        """A message from the agent for this id (called by the channel's reader)."""
        kind = message.get("type")
        if kind == protocol.EV_ACK:
            self._in_flight -= int(message.get("bytes", 0))
            self._credit.set()
            return
        if kind == protocol.EV_ERROR:
            self._failure = error_from_message(message)
        if kind in (protocol.EV_ERROR, protocol.EV_EXIT, protocol.EV_EOF, protocol.EV_DONE):
            self._ended = True
            self._credit.set()
        self._queue.put_nowait(message)

    def fail(self, error: BungalowError | None) -> None:
        """End the stream: with ``error`` when the channel is lost, quietly on None."""
        if error is not None and self._failure is None:
            self._failure = error
        self._ended = True
        self._credit.set()
        self._queue.put_nowait(None)

    async def next_message(self) -> dict[str, Any] | None:
        """The next message, None once ended quietly; raises an error event's error."""
        message = await self._queue.get()
        if message is None:
            self._queue.put_nowait(None)  # every later call ends too
            if self._failure is not None:
                raise self._failure
            return None
        if message.get("type") == protocol.EV_ERROR:
            assert self._failure is not None
            raise self._failure
        return message

    def consumed(self, size: int) -> None:
        """``size`` bytes left our hands: give the agent credit for more, now and then."""
        self._unacked += size
        if self._unacked >= protocol.ACK_THRESHOLD:
            self.outbox._send_nowait(
                protocol.request(protocol.OP_ACK, self.id, bytes=self._unacked)
            )
            self._unacked = 0

    async def send_data(self, op: str, data: bytes) -> bool:
        """Send ``data`` in chunks within the window; False if the stream already ended."""
        for chunk in protocol.chunks(data):
            while self._in_flight >= protocol.WINDOW and not self._ended:
                self._credit.clear()
                await self._credit.wait()
            if self._failure is not None:
                raise self._failure
            if self._ended:
                return False
            self._in_flight += len(chunk)
            await self.outbox._send(protocol.request(op, self.id, data=protocol.encode_data(chunk)))
        return True

    def cancel(self) -> None:
        """Tell the agent to drop this id and stop waiting for it here."""
        if not self._ended:
            self.outbox._send_nowait(protocol.request(protocol.OP_CANCEL, self.id))
        self.outbox._forget(self.id)
        self.fail(None)


@dataclass(frozen=True)
class ExecEvent:
    """Output of a command, or its end.

    ``exit_code`` is None when a signal ended the command (then ``signal`` says
    which); ``timed_out`` says the agent killed it because its timeout passed.
    """

    kind: Literal["stdout", "stderr", "exit"]
    data: bytes = b""
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class ExecResult:
    """Everything a finished command produced, for callers that do not stream."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    stdout: bytes
    stderr: bytes


class ExecSession:
    """A command running in the guest.

    Read :meth:`events` to the end (or leave with :meth:`cancel`): output is
    back-pressured, so a session nobody reads stalls its command once the
    credit window is full. As an async context manager it cancels a command
    that is still running on exit.

    ``deadline`` (the event loop's time) bounds a command with a timeout: if
    the agent has not reported its end by then, the session cancels it and
    ends with a timed-out exit event of its own, so no caller waits for ever
    on a guest that stopped answering.
    """

    def __init__(self, stream: Stream, *, deadline: float | None = None) -> None:
        self._stream = stream
        self._deadline = deadline
        self.pid: int | None = None
        self.exit_event: ExecEvent | None = None
        self._first: dict[str, Any] | None = None

    async def _next(self) -> dict[str, Any] | None:
        """The stream's next message, or the host's own timed-out exit past the deadline."""
        if self._deadline is None:
            return await self._stream.next_message()
        try:
            async with asyncio.timeout_at(self._deadline):
                return await self._stream.next_message()
        except TimeoutError:
            self._stream.cancel()
            return dict(_OVERDUE)

    async def _started(self) -> None:
        """Wait for the agent to start the command (or to refuse it)."""
        try:
            first = await self._next()
        except BaseException:
            self._stream.cancel()  # e.g. the caller gave up waiting: do not leave it running
            raise
        if first is not None and first.get("type") == protocol.EV_STARTED:
            self.pid = first.get("pid")
        else:  # could not run (exit 127 and its message): no pid, straight to events
            self._first = first

    @property
    def id(self) -> int:
        return self._stream.id

    async def events(self) -> AsyncIterator[ExecEvent]:
        """stdout and stderr chunks as the command writes them, then one exit event."""
        while self.exit_event is None:
            message, self._first = self._first, None
            if message is None:
                message = await self._next()
                if message is None:
                    return  # cancelled
            kind = message.get("type")
            if kind == protocol.EV_STDOUT or kind == protocol.EV_STDERR:
                data = protocol.decode_data(message)
                self._stream.consumed(len(data))
                yield ExecEvent(kind, data)
            elif kind == protocol.EV_EXIT:
                self.exit_event = ExecEvent(
                    "exit",
                    exit_code=message.get("code"),
                    signal=message.get("signal"),
                    timed_out=bool(message.get("timed_out")),
                )
                self._stream.outbox._forget(self.id)
                yield self.exit_event

    async def collect(self) -> ExecResult:
        """Wait for the end and return all output; for commands with modest output."""
        out: list[bytes] = []
        err: list[bytes] = []
        async for event in self.events():
            (out if event.kind == "stdout" else err).append(event.data)
        end = self.exit_event
        if end is None:
            raise AgentError("The command was cancelled before it finished.")
        return ExecResult(end.exit_code, end.signal, end.timed_out, b"".join(out), b"".join(err))

    async def write_stdin(self, data: bytes) -> None:
        """Send ``data`` to the command's stdin; dropped once the command has exited."""
        await self._stream.send_data(protocol.OP_STDIN, data)

    async def close_stdin(self) -> None:
        """End of input (on a terminal: Ctrl-D)."""
        await self._control(protocol.OP_STDIN_CLOSE)

    async def send_signal(self, sig: int | str) -> None:
        """Signal the command's process group, like a key pressed at a terminal."""
        if isinstance(sig, str):
            name = sig.upper() if sig.upper().startswith("SIG") else "SIG" + sig.upper()
            try:
                sig = int(signals.Signals[name])
            except KeyError:
                raise UserError(
                    f"{sig!r} is not a signal name; use one like TERM or KILL."
                ) from None
        await self._control(protocol.OP_SIGNAL, sig=int(sig))

    async def resize(self, rows: int, cols: int) -> None:
        """Change the terminal size of a tty session (the command gets SIGWINCH)."""
        if not (0 < rows < 65536 and 0 < cols < 65536):
            raise UserError(f"A terminal of {rows}x{cols} is not possible; give positive sizes.")
        await self._control(protocol.OP_RESIZE, rows=rows, cols=cols)

    async def cancel(self) -> None:
        """Stop caring: the agent ends the command, and events() ends.

        The agent sends SIGHUP to a terminal session (a hang-up), SIGTERM to
        others, then SIGKILL after the kill grace. It never waits, so it is safe
        in a ``finally`` of a task being cancelled.
        """
        if self.exit_event is None:
            self._stream.cancel()

    async def _control(self, op: str, **fields: Any) -> None:
        if not self._stream.ended:
            await self._stream.outbox._send(protocol.request(op, self.id, **fields))

    async def __aenter__(self) -> ExecSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cancel()
