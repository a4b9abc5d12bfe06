"""The wire format shared by the host and the agent."""

from __future__ import annotations

import os

import pytest

from bungalow.guest import protocol


def test_messages_round_trip_as_single_lines() -> None:
    message = protocol.request(protocol.OP_EXEC, 2**40 + 3, argv=["echo", "é\n"], env={"A": "1"})
    line = protocol.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
    assert protocol.decode(line) == message  # with its newline, as readline gives it
    assert protocol.decode(line.rstrip(b"\n")) == message  # without, as split gives it


def test_data_fields_carry_any_bytes() -> None:
    data = os.urandom(protocol.MAX_CHUNK)
    message = protocol.event(protocol.EV_STDOUT, 1, data=protocol.encode_data(data))
    assert protocol.decode_data(protocol.decode(protocol.encode(message))) == data
    assert protocol.decode_data({"id": 1}) == b""
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_data({"id": 1, "data": "not base64!"})


@pytest.mark.parametrize(
    "line",
    [
        b"garbage",
        b"",
        b'{"id": 1} trailing',
        b'"just a string"',
        b'{"no": "id"}',
        b'{"id": "1"}',
        b'{"id": NaN}',
        b'{"id": 1,',
        b"[" * 100_000,
        b"\xff\xfe",
    ],
)
def test_garbage_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(line)


def test_fast_codec_agrees_with_the_json_module() -> None:
    fast_dumps, fast_loads = protocol._c_codec()
    dumps, loads = protocol._py_codec()
    message = {"id": 5, "type": "exit", "code": None, "timed_out": False, "x": [1.5, "ü\t"]}
    assert fast_dumps(message) == dumps(message)
    assert fast_loads(dumps(message)) == loads(dumps(message)) == message
    with pytest.raises(TypeError):
        fast_dumps({"id": 1, "bad": b"bytes"})


def test_chunks_respect_the_limit() -> None:
    data = bytes(range(256)) * 1000
    pieces = list(protocol.chunks(data, 1000))
    assert b"".join(pieces) == data and max(map(len, pieces)) == 1000
    assert list(protocol.chunks(b"")) == []
    assert protocol.WINDOW >= protocol.MAX_CHUNK >= protocol.ACK_THRESHOLD
