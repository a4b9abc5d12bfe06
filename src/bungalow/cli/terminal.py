"""Interactive sessions over the daemon's websockets: ``exec -it``, ``shell``, ``console``.

The local terminal is put in raw mode only when stdin is a terminal, and always
restored, whatever ends the session.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, unix_connect

from bungalow.client.http import Client, raise_event_error

DETACH = b"\x1d"  # Ctrl-]


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _connect(api: Client, path: str) -> ClientConnection:
    return unix_connect(
        str(api.socket_path),
        f"ws://bungalowd{path}",
        max_size=None,
        additional_headers=api.headers,
    )


def _forward_stdin(ws: ClientConnection, stop: threading.Event, *, detach: bool) -> None:
    """Copy our stdin to the websocket until EOF, detach key, or ``stop``."""
    fd = sys.stdin.fileno()
    with contextlib.suppress(ConnectionClosed, OSError):
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if detach and DETACH in data:
                ws.close()
                return
            if not data:
                if not detach:
                    ws.send(json.dumps({"type": "stdin_close"}))
                return
            ws.send(data)


def interactive_exec(api: Client, name: str, argv: list[str], *, tty: bool, **options: Any) -> int:
    request: dict[str, Any] = {"argv": argv, "tty": tty, "stdin": "", **options}
    if tty:
        size = shutil.get_terminal_size()
        request.update(rows=size.lines, cols=size.columns)
    code = 1
    with _connect(api, f"/v1/vms/{name}/exec/ws") as ws:
        ws.send(json.dumps(request))
        stop = threading.Event()
        pump = threading.Thread(target=_forward_stdin, args=(ws, stop), kwargs={"detach": False})
        if tty:
            signal.signal(signal.SIGWINCH, lambda *_: _send_resize(ws))
        with raw_terminal(tty):
            pump.start()
            try:
                for message in ws:
                    event = json.loads(message)
                    raise_event_error(event)
                    if event["type"] in ("stdout", "stderr"):
                        stream = sys.stdout if event["type"] == "stdout" else sys.stderr
                        stream.buffer.write(base64.b64decode(event["data"]))
                        stream.buffer.flush()
                    elif event["type"] == "exit":
                        code = event.get("exit_code") or 0
                        if event.get("signal"):
                            code = 128 + int(event["signal"])
                        break
            except ConnectionClosed:
                pass
            finally:
                stop.set()
    return int(code)


def _send_resize(ws: ClientConnection) -> None:
    size = shutil.get_terminal_size()
    with contextlib.suppress(Exception):
        ws.send(json.dumps({"type": "resize", "rows": size.lines, "cols": size.columns}))


def attach_console(api: Client, name: str) -> None:
    api.get_vm(name)
    if sys.stdin.isatty():
        print(f"Connected to the console of {name}; detach with Ctrl-].\r", file=sys.stderr)
    with _connect(api, f"/v1/vms/{name}/console") as ws:
        stop = threading.Event()
        pump = threading.Thread(target=_forward_stdin, args=(ws, stop), kwargs={"detach": True})
        with raw_terminal(True):
            pump.start()
            try:
                for message in ws:
                    if isinstance(message, str):
                        raise_event_error(json.loads(message))
                        continue
                    sys.stdout.buffer.write(message)
                    sys.stdout.buffer.flush()
            except ConnectionClosed:
                pass
            finally:
                stop.set()
