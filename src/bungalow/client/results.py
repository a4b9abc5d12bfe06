"""Commands in a sandbox: their arguments, their output and how they ended.

Shared by :class:`~bungalow.Sandbox` and :class:`~bungalow.AsyncSandbox`, which
differ only in how they wait for the daemon: everything here is pure, so both
run a command through the same :class:`ExecRun` and raise the same errors.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from bungalow.errors import (
    AgentError,
    CommandFailedError,
    CommandTimeoutError,
    InvalidStateError,
    UserError,
)
from bungalow.units import parse_duration

if TYPE_CHECKING:
    from bungalow.client.shapes import ExecEvent, ExitEvent

#: A shell string (run by ``/bin/sh -c``) or an argument list (run as it is).
Command = str | Sequence[str]
#: ``"90s"``, ``"10m"``, ``"1h"``, a number of seconds, or a timedelta.
Duration = str | float | timedelta

Stream = Literal["stdout", "stderr"]


def to_seconds(duration: Duration, *, what: str) -> float:
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    return parse_duration(duration, what=what)


def check_keywords(what: str, given: Mapping[str, object], allowed: frozenset[str]) -> None:
    """Refuse a misspelt keyword as Python would; ``**options`` would otherwise drop it."""
    for key in given:
        if key not in allowed:
            raise TypeError(f"{what} got an unexpected keyword argument {key!r}")


#: The exit status of a command its timeout killed, as coreutils' timeout(1) gives.
TIMEOUT_EXIT = 124


def exit_status(event: ExitEvent) -> int:
    """The number a shell would give for how a command ended.

    124 when its timeout killed it (as ``timeout(1)``: the agent ends it with a
    signal, but the timeout is what the user needs to hear about), 128+N when
    signal N ended it (137 for SIGKILL), else its exit code.
    """
    if event.get("timed_out"):
        return TIMEOUT_EXIT
    if signal := event.get("signal"):
        return 128 + signal
    return event.get("exit_code") or 0


#: Seconds past a command's timeout a client waits for bungalowd to report its end before
#: it stops by itself: the agent ends the command at the timeout (SIGKILL 2 s later), and
#: bungalowd stops waiting for a silent agent 5 s after that.
CLIENT_SLACK = 15.0


class ExecDeadline:
    """When a client stops waiting for a command that has a timeout, whatever happens.

    The wait ends ``timeout`` + :data:`CLIENT_SLACK` seconds from construction; with
    no timeout it never does (every method then says so with None or False).
    """

    def __init__(self, timeout: float | None) -> None:
        self.wait = None if timeout is None else timeout + CLIENT_SLACK
        self._at = None if self.wait is None else time.monotonic() + self.wait

    def remaining(self) -> float | None:
        """Seconds left, at least 0; None without a timeout."""
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    def passed(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at


def overdue_exit() -> ExitEvent:
    """The exit a client reports for a command whose end bungalowd did not report in time:
    a timeout (the daemon ends the command once the client has gone)."""
    return {"type": "exit", "exit_code": None, "signal": None, "timed_out": True}


def timeout_sentence(seconds: float | None, shown: str | None = None) -> str:
    """What to tell a user whose command (``shown``, if given) its timeout killed."""
    command = f"The command `{shown}`" if shown else "The command"
    return f"{command} ran past its timeout of {seconds or 0:g}s and was killed."


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class ExecResult:
    """How a command ended and what it printed.

    ``exit_code`` is None when a signal ended the command (``signal`` says which);
    ``timed_out`` says its timeout killed it. ``stdout`` and ``stderr`` are the
    bytes decoded as UTF-8, with anything that is not UTF-8 replaced.
    """

    exit_code: int | None
    signal: int | None = None
    timed_out: bool = False
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""

    @property
    def stdout(self) -> str:
        return _decode(self.stdout_bytes)

    @property
    def stderr(self) -> str:
        return _decode(self.stderr_bytes)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class ExecChunk:
    """Output as it came: a chunk may end inside a UTF-8 character, so ``text`` of
    one chunk can hold a replacement character where the joined bytes would not."""

    stream: Stream
    data: bytes

    @property
    def text(self) -> str:
        return _decode(self.data)


class ExecOptions(TypedDict, total=False):
    """The keywords of ``exec`` and ``exec_stream``; all optional."""

    env: Mapping[str, str] | None
    cwd: str | None
    user: str | None
    timeout: Duration | None
    stdin: bytes | str | None
    check: bool


@dataclass(frozen=True)
class ExecRequest:
    """One command, normalised: what the daemon is sent and what the SDK checks after."""

    argv: list[str]
    stdin: bytes | None
    options: dict[str, Any]
    timeout: float | None
    check: bool

    @classmethod
    def build(cls, cmd: Command, options: ExecOptions) -> ExecRequest:
        check_keywords("exec()", options, ExecOptions.__optional_keys__)
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if not argv or not all(isinstance(arg, str) for arg in argv):
            raise UserError("The command is empty or not text; pass a shell string or a list.")
        raw_timeout = options.get("timeout")
        timeout = None if raw_timeout is None else to_seconds(raw_timeout, what="command timeout")
        stdin = options.get("stdin")
        return cls(
            argv=argv,
            stdin=stdin.encode() if isinstance(stdin, str) else stdin,
            options={
                "env": dict(options.get("env") or {}),
                "cwd": options.get("cwd"),
                "user": options.get("user"),
                "timeout": timeout,
            },
            timeout=timeout,
            check=bool(options.get("check", False)),
        )

    @property
    def shown(self) -> str:
        """The command as a person typed it, cut short for an error message."""
        argv = self.argv
        text = argv[2] if len(argv) == 3 and argv[:2] == ["/bin/sh", "-c"] else shlex.join(argv)
        return text if len(text) <= 60 else text[:57] + "..."


def _failure_message(shown: str, result: ExecResult) -> str:
    if result.exit_code is None:
        ending = f"was killed by signal {result.signal}"
    else:
        ending = f"exited with status {result.exit_code}"
    last = result.stderr.strip().splitlines()[-1:] or [""]
    detail = f": {last[0][:200]}" if last[0] else ""
    return f"The command `{shown}` {ending}{detail}."


class ExecRun:
    """One command on its way: folds the daemon's events into chunks, then a result.

    ``keep_output`` joins the output into the result (``exec``); a stream hands
    every chunk to its reader instead and keeps none, so its result carries the
    exit status with empty output.
    """

    def __init__(self, cmd: Command, options: ExecOptions, *, keep_output: bool) -> None:
        self.request = ExecRequest.build(cmd, options)
        self._keep_output = keep_output
        self._output: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        self._result: ExecResult | None = None

    def feed(self, event: ExecEvent) -> ExecChunk | None:
        """The chunk an output event carries; None for the exit event, which is kept."""
        if event["type"] == "stdout" or event["type"] == "stderr":
            if self._keep_output:
                self._output[event["type"]].append(event["data"])
            return ExecChunk(event["type"], event["data"])
        if event["type"] == "exit":
            self._result = ExecResult(
                exit_code=event.get("exit_code"),
                signal=event.get("signal"),
                timed_out=bool(event.get("timed_out")),
                stdout_bytes=b"".join(self._output["stdout"]),
                stderr_bytes=b"".join(self._output["stderr"]),
            )
        return None

    def finish(self) -> ExecResult:
        """The result once the events ended; raises for a timeout and, with check, a failure."""
        result = self._result
        shown = self.request.shown
        if result is None:
            raise AgentError(
                f"The command `{shown}` ended without an exit status; the sandbox may have stopped."
            )
        if result.timed_out:
            raise CommandTimeoutError(timeout_sentence(self.request.timeout, shown), result)
        if self.request.check and not result.ok:
            raise CommandFailedError(_failure_message(shown, result), result)
        return result

    @property
    def result(self) -> ExecResult:
        if self._result is None:
            raise InvalidStateError(
                "The command has not finished; read its stream to the end before asking."
            )
        return self._result


class ExecStreamBase:
    """What the sync and the async stream share: the result, once the output has ended."""

    def __init__(self, run: ExecRun) -> None:
        self._run = run

    @property
    def result(self) -> ExecResult:
        """How the command ended (its output went to the reader, so it is empty here)."""
        return self._run.result
