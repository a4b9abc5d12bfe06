"""The one-time VNC door on real sockets: one connection carried, then none; the password
expired when that connection ends, or when nobody came in time; nothing left listening."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bungalow.daemon.vms.vnc_relay import VncRelay


class Expiries:
    def __init__(self) -> None:
        self.count = 0
        self.happened = asyncio.Event()

    async def __call__(self) -> None:
        self.count += 1
        self.happened.set()


async def _echo_server(path: Path) -> asyncio.Server:
    """Stands in for QEMU's VNC socket: sends a greeting, then echoes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"RFB 003.008\n")
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(serve, str(path))


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_the_first_connection_is_carried_and_the_door_then_closes(tmp_path: Path) -> None:
    server = await _echo_server(tmp_path / "vnc.sock")
    expiries = Expiries()
    relay = await VncRelay.open(tmp_path / "vnc.sock", expiries)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        assert await reader.readexactly(12) == b"RFB 003.008\n"
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        assert await _refused(relay.port)  # one connection only
        assert expiries.count == 0  # the viewer is still in
        writer.close()
        await asyncio.wait_for(expiries.happened.wait(), 10)
        assert expiries.count == 1
    finally:
        await relay.close()
        server.close()


async def test_nobody_in_time_closes_the_door_and_expires_the_password(tmp_path: Path) -> None:
    expiries = Expiries()
    relay = await VncRelay.open(tmp_path / "vnc.sock", expiries, lifetime=0.05)
    await asyncio.wait_for(expiries.happened.wait(), 10)
    assert not relay.listening and await _refused(relay.port)
    await relay.close()


async def test_closing_ends_the_connection_it_carries(tmp_path: Path) -> None:
    server = await _echo_server(tmp_path / "vnc.sock")
    relay = await VncRelay.open(tmp_path / "vnc.sock", Expiries())
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    await reader.readexactly(12)
    await relay.close()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # hung up
    assert await _refused(relay.port)
    writer.close()
    server.close()


async def test_a_vnc_socket_that_is_gone_hangs_up_and_expires(tmp_path: Path) -> None:
    expiries = Expiries()
    relay = await VncRelay.open(tmp_path / "absent.sock", expiries)
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    assert await asyncio.wait_for(reader.read(), 10) == b""
    await asyncio.wait_for(expiries.happened.wait(), 10)
    writer.close()
    await relay.close()


pytestmark = pytest.mark.timeout(60)
