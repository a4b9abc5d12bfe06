"""Relay stdin and stdout to a TCP port of the guest: the far end of ``bungalow ssh``.

Run inside the guest by an interactive exec (``python3 -S -c SOURCE HOST PORT``,
the source sent by the CLI, so it works whichever way an image carries the
agent). Standard library only, and only its C modules (``_socket``, ``select``):
under TCG on a busy host, ``import socket`` alone took seconds. One thread,
``select`` on stdin and the socket (no busy loop); bytes pass unchanged both
ways; the end of stdin is passed on as a half-close (``shutdown(SHUT_WR)``),
and the relay ends when the server closes.

Exit status: 0 when the server closed the connection, :data:`REFUSED` when
nothing listens on the port (with one line on stderr).
"""

from __future__ import annotations

import _socket  # socket itself would import enum and selectors: seconds of TCG time
import os
import select
import sys

REFUSED = 3
CHUNK = 65536


def relay(host: str, port: int) -> int:
    conn = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        conn.settimeout(10)
        conn.connect((host, port))
    except OSError as error:
        sys.stderr.write(f"nothing answers on {host}:{port} in the guest ({error.strerror})\n")
        return REFUSED
    conn.settimeout(None)
    conn.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    sources = [sys.stdin.fileno(), conn.fileno()]
    while True:
        ready, _, _ = select.select(sources, [], [])
        if conn.fileno() in ready:
            data = conn.recv(CHUNK)
            if not data:
                return 0
            _write_all(sys.stdout.fileno(), data)
        if sys.stdin.fileno() in ready:
            data = os.read(sys.stdin.fileno(), CHUNK)
            if data:
                conn.sendall(data)
            else:
                conn.shutdown(_socket.SHUT_WR)
                sources.remove(sys.stdin.fileno())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    sys.exit(relay(sys.argv[1], int(sys.argv[2])))
