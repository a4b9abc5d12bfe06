"""A command's timeout holds in the client whatever bungalowd does: no VM, real sockets.

The daemons here accept an exec and then say nothing, as one whose guest hung would;
the client must end by the timeout plus its slack with a timed-out exit.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from websockets.sync.server import ServerConnection

from bungalow.client import results
from bungalow.client.async_http import AsyncClient
from bungalow.client.http import Client
from bungalow.paths import DataDir
from tests.client.answers import short_data_dir, websocket_daemon

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def data(monkeypatch: pytest.MonkeyPatch) -> Iterator[DataDir]:
    monkeypatch.setattr(results, "CLIENT_SLACK", 0.5)  # not 15 s of a test's time
    with short_data_dir() as data:
        yield data


@contextlib.contextmanager
def silent_http_daemon(data: DataDir) -> Iterator[list[bytes]]:
    """An HTTP server on ``data``'s socket that starts an NDJSON answer and never goes on."""
    requests: list[bytes] = []
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(data.socket))
    listener.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                held.append(connection)
                requests.append(connection.recv(65536))
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield requests
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for connection in held:
            connection.close()
        thread.join(timeout=10)


def test_a_streamed_exec_ends_by_its_timeout_when_the_daemon_says_nothing(
    data: DataDir,
) -> None:
    with silent_http_daemon(data) as requests, Client(data, autostart=False) as api:
        events = list(api.exec_events("web", ["sleep", "60"], timeout=0.5))
    assert events == [results.overdue_exit()]
    assert requests and requests[0].startswith(b"POST /v1/vms/web/exec")


async def test_the_async_client_ends_by_the_timeout_too(data: DataDir) -> None:
    with silent_http_daemon(data):
        async with AsyncClient(data, autostart=False) as api:
            events = [event async for event in api.exec_events("web", ["sleep", "60"], timeout=0.5)]
    assert events == [results.overdue_exit()]


def test_an_interactive_exec_ends_by_its_timeout_when_the_daemon_says_nothing(
    data: DataDir,
) -> None:
    def silent(connection: ServerConnection) -> None:
        connection.recv()  # the request; then nothing until the client goes
        with contextlib.suppress(Exception):
            connection.recv()

    with websocket_daemon(data, silent), Client(data, autostart=False) as api:
        with api.exec_interactive("web", ["sleep", "60"], timeout=0.5) as session:
            assert list(session.output()) == []
        assert session.exit == results.overdue_exit()
