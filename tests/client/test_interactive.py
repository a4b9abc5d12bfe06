"""Interactive sessions against a tiny websocket server on a Unix socket: no daemon, no VM.

Refusals are checked both ways a daemon may refuse: the new way (accept, send an
``error`` frame, close with 4000 + status) and the old way (answer the handshake
with an HTTP status), each ending as one :mod:`bungalow.errors` class.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from websockets.sync.server import ServerConnection

from bungalow import errors
from bungalow.client.http import Client
from bungalow.client.interactive import closed_error, refusal_error
from bungalow.paths import DataDir
from tests.client.answers import (
    Daemon,
    json_answer,
    refuse_handshake,
    short_data_dir,
    vm_info,
    websocket_daemon,
)


@pytest.fixture
def data() -> Iterator[DataDir]:
    with short_data_dir() as data:
        yield data


@pytest.fixture
def api(data: DataDir) -> Iterator[Client]:
    """A client whose REST calls a mock answers; its websockets go to ``data``'s socket."""
    daemon = Daemon().on("GET", "/v1/vms/web", json_answer(vm_info("web")))
    with daemon.client(data) as client:
        yield client


def _frame(kind: str, data: bytes) -> str:
    return json.dumps({"type": kind, "data": base64.b64encode(data).decode()})


def echo_command(connection: ServerConnection) -> None:
    """A command that prints its stdin in upper case, then exits 7 at end of input."""
    request = json.loads(connection.recv())
    connection.send(_frame("stdout", f"argv={request['argv']} tty={request['tty']}\n".encode()))
    for message in connection:
        if isinstance(message, bytes):
            connection.send(_frame("stdout", message.upper()))
        elif json.loads(message)["type"] == "stdin_close":
            connection.send(_frame("stderr", b"bye\n"))
            connection.send(json.dumps({"type": "exit", "exit_code": 7, "signal": None,
                                        "timed_out": False}))  # fmt: skip
            return


def test_an_exec_session_sends_the_request_and_stdin_and_hands_out_output(
    data: DataDir, api: Client
) -> None:
    with websocket_daemon(data, echo_command) as paths:
        with api.exec_interactive("web", ["cat"], cwd="/tmp") as session:
            chunks = session.output()
            assert next(chunks).text == "argv=['cat'] tty=False\n"
            session.send_input(b"shout")
            assert next(chunks).text == "SHOUT"
            session.close_stdin()
            assert [(chunk.stream, chunk.text) for chunk in chunks] == [("stderr", "bye\n")]
        assert session.exit == {"type": "exit", "exit_code": 7, "signal": None, "timed_out": False}
        session.send_input(b"late")  # after the end: dropped, no error
    assert paths == ["/v1/vms/web/exec/ws"]


def refuse_with_frame(connection: ServerConnection) -> None:
    """What a daemon refusing the new way does: accept, say why, close with 4000 + status."""
    error = {"type": "error", "code": "vm_not_found", "message": "There is no VM named web."}
    connection.send(json.dumps(error))
    connection.close(4404)


def test_an_error_frame_then_a_close_is_its_class_with_its_sentence(
    data: DataDir, api: Client
) -> None:
    with websocket_daemon(data, refuse_with_frame):
        session = api.exec_interactive("web", ["sh"])
        with session, pytest.raises(errors.VmNotFoundError) as refused:
            list(session.output())
    assert refused.value.message == "There is no VM named web."
    assert session.exit is None


def test_a_close_code_alone_is_the_class_of_its_status(data: DataDir, api: Client) -> None:
    with (
        websocket_daemon(data, lambda connection: connection.close(4401)),
        api.exec_interactive("web", ["sh"]) as session,
        pytest.raises(errors.UnauthorizedError) as refused,
    ):
        list(session.output())
    assert refused.value.message == (
        "bungalowd refused an interactive command in web (close code 4401); "
        "the API token is not valid; check BUNGALOW_TOKEN."
    )


def test_a_close_code_with_a_reason_uses_the_reason(data: DataDir, api: Client) -> None:
    def refuse(connection: ServerConnection) -> None:
        connection.close(4403, "A project token cannot attach to a console.")

    with (
        websocket_daemon(data, refuse),
        api.console("web") as session,
        pytest.raises(errors.ForbiddenError, match=r"^A project token cannot attach"),
    ):
        list(session.output())


@pytest.mark.parametrize("body", [b"", b"Forbidden"])
def test_a_handshake_refused_without_a_code_is_the_class_of_its_status(
    data: DataDir, api: Client, body: bytes
) -> None:
    with (
        websocket_daemon(data, echo_command, refuse_handshake(403, body)),
        pytest.raises(errors.ForbiddenError) as refused,
    ):
        api.exec_interactive("web", ["sh"])
    assert refused.value.message == (
        "bungalowd refused an interactive command in web (HTTP 403); "
        "check the VM's name with `bungalow ls`, and that your API token may use it."
    )


def test_a_handshake_refused_with_a_json_error_is_that_error(data: DataDir, api: Client) -> None:
    body = json.dumps({"error": {"code": "vm_not_found", "message": "There is no VM web."}})
    with (
        websocket_daemon(data, echo_command, refuse_handshake(404, body.encode())),
        pytest.raises(errors.VmNotFoundError, match=r"^There is no VM web\.$"),
    ):
        api.console("web")


def test_a_session_broken_off_is_a_daemon_error(data: DataDir, api: Client) -> None:
    with (
        websocket_daemon(data, lambda connection: connection.close(1011, "internal error")),
        api.exec_interactive("web", ["sh"]) as session,
        pytest.raises(errors.DaemonError, match="broke off"),
    ):
        list(session.output())


def test_no_daemon_on_the_socket_is_a_daemon_error(api: Client) -> None:
    with pytest.raises(errors.DaemonError, match="Lost the connection to bungalowd"):
        api.exec_interactive("web", ["sh"])


def test_the_console_carries_bytes_both_ways(data: DataDir, api: Client) -> None:
    def console(connection: ServerConnection) -> None:
        connection.send(b"login: ")
        typed = connection.recv()
        connection.send(b"echo:" + bytes(typed))

    with websocket_daemon(data, console) as paths, api.console("web") as session:
        output = session.output()
        assert next(output) == b"login: "
        session.send_input(b"root\r")
        assert next(output) == b"echo:root\r"
        assert list(output) == []
    assert paths == ["/v1/vms/web/console"]


def test_the_mapping_of_statuses_and_close_codes() -> None:
    named = refusal_error(
        403, "x", "HTTP 403", b'{"error": {"code": "capacity", "message": "Full."}}'
    )
    assert (type(named), named.message) == (errors.CapacityError, "Full.")
    assert type(refusal_error(409, "x", "HTTP 409")) is errors.ConflictError
    assert type(refusal_error(500, "x", "HTTP 500", b"not json")) is errors.BungalowError
    assert type(closed_error(4404, "", "x")) is errors.NotFoundError
    assert type(closed_error(4409, "", "x")) is errors.ConflictError
    assert type(closed_error(1006, "", "x")) is errors.DaemonError
    assert closed_error(4409, "The VM web is stopped.", "x").message == "The VM web is stopped."
