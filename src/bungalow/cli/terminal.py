"""The local terminal of interactive sessions: ``exec -it``, ``shell``, ``console``.

The sessions themselves (the websocket protocol, refusals) are the client's
(:mod:`bungalow.client.interactive`); this module only puts the terminal in raw
mode (when stdin is one, and always restores it), follows its size, copies
stdin to the session and the session's output to stdout and stderr.

A hang-up (SIGHUP) or SIGTERM ends a session as cleanly as the command's end
does: the terminal is restored and the websocket closed, so bungalowd ends the
guest command; the status is then 128+N, as a shell gives for signal N.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from typing import Any

from bungalow.cli.guest import command_status, write_output
from bungalow.client.http import Client
from bungalow.client.interactive import ExecSession

DETACH = b"\x1d"  # Ctrl-]


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        # TCSANOW, not setraw's default TCSAFLUSH: keys typed as the session opened (before
        # this line ran) still go to the guest rather than being thrown away.
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _terminal_size() -> tuple[int, int]:
    """Rows and columns of our terminal."""
    size = shutil.get_terminal_size()
    return size.lines, size.columns


def _forward_stdin(
    send: Callable[[bytes], None], stop: threading.Event, *, on_eof: Callable[[], None]
) -> None:
    """Copy our stdin to ``send`` until ``stop``; at end of input call ``on_eof``."""
    fd = sys.stdin.fileno()
    with contextlib.suppress(OSError):
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                on_eof()
                return
            send(data)


@contextlib.contextmanager
def _pumping_stdin(
    send: Callable[[bytes], None], *, on_eof: Callable[[], None], raw: bool
) -> Iterator[None]:
    """Forward stdin in a thread, in raw mode if ``raw``, for as long as the block runs."""
    stop = threading.Event()
    pump = threading.Thread(target=_forward_stdin, args=(send, stop), kwargs={"on_eof": on_eof})
    with raw_terminal(raw):
        pump.start()
        try:
            yield
        finally:
            stop.set()


class _Ended(Exception):
    """This process got a signal that ends it; raised in the main thread by its handler."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _ending_on_signals() -> Iterator[None]:
    """SIGHUP and SIGTERM raise :class:`_Ended` here, so that ``with`` blocks clean up."""

    def end(signum: int, _frame: object) -> None:
        raise _Ended(signum)

    saved = {signum: signal.signal(signum, end) for signum in (signal.SIGHUP, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def interactive_exec(
    api: Client,
    name: str,
    argv: list[str],
    *,
    tty: bool,
    timeout: float | None = None,
    **options: Any,
) -> int:
    """Run ``argv`` with our stdin (and terminal, with ``tty``); its exit status."""
    if tty:
        options["rows"], options["cols"] = _terminal_size()
    try:
        with (
            _ending_on_signals(),
            api.exec_interactive(name, argv, tty=tty, timeout=timeout, **options) as session,
        ):
            if tty:
                signal.signal(signal.SIGWINCH, lambda *_: _follow_size(session))
            with _pumping_stdin(session.send_input, on_eof=session.close_stdin, raw=tty):
                for chunk in session.output():
                    write_output(chunk.stream, chunk.data)
    except _Ended as ended:
        return 128 + ended.signum
    return command_status(session.exit, timeout)


def _follow_size(session: ExecSession) -> None:
    # A signal handler: whatever it raised would surface in arbitrary code of the
    # main thread, and a missed resize only leaves the terminal's size stale.
    with contextlib.suppress(Exception):
        session.resize(*_terminal_size())


def attach_console(api: Client, name: str) -> None:
    """Bridge our terminal to the VM's serial console until Ctrl-] or the VM ends it."""
    with api.console(name) as session:
        if sys.stdin.isatty():
            print(f"Connected to the console of {name}; detach with Ctrl-].\r", file=sys.stderr)

        def send(data: bytes) -> None:
            if DETACH in data:
                session.close()
            else:
                session.send_input(data)

        with _pumping_stdin(send, on_eof=lambda: None, raw=True):
            for data in session.output():
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
