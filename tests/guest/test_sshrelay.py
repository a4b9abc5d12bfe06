"""The guest's SSH relay, run on the host against a real TCP server: bytes unchanged both
ways, end of input passed on as a half-close, a closed port reported with its own status."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

from bungalow.guest import sshrelay


def test_bytes_pass_unchanged_and_eof_is_a_half_close() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def reverse_once() -> None:
        conn, _ = server.accept()
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        conn.sendall(data[::-1])  # only possible once the client's half-close arrived
        conn.close()

    thread = threading.Thread(target=reverse_once)
    thread.start()
    payload = os.urandom(200_000)
    done = subprocess.run(
        [sys.executable, "-S", sshrelay.__file__, "127.0.0.1", str(port)],
        input=payload, capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    thread.join()
    server.close()
    assert done.returncode == 0
    assert done.stdout == payload[::-1]


def test_nothing_listening_is_its_own_status() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
        done = subprocess.run(
            [sys.executable, "-S", sshrelay.__file__, "127.0.0.1", str(port)],
            input=b"", capture_output=True, timeout=30, check=False,
        )  # fmt: skip
    assert done.returncode == sshrelay.REFUSED
    assert b"nothing answers on 127.0.0.1" in done.stderr
