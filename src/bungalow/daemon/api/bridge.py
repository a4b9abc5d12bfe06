"""A websocket carried to a Unix socket, bytes both ways: the serial console, a VNC screen."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from fastapi import WebSocket, WebSocketDisconnect

CHUNK = 1 << 16


async def carry(
    websocket: WebSocket,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    on_input: Callable[[], None] = lambda: None,
) -> None:
    """Carry the socket's bytes to the websocket as binary frames, and the websocket's
    binary frames (text too, as UTF-8) to the socket, calling ``on_input`` for each, until
    either side ends; then close both. QEMU closing its end (the VM stopped) closes the
    websocket, so that a client knows and may reconnect."""

    async def socket_to_websocket() -> None:
        while data := await reader.read(CHUNK):
            await websocket.send_bytes(data)

    async def websocket_to_socket() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes") or (message.get("text") or "").encode()
            if data:
                on_input()
                writer.write(data)
                await writer.drain()

    pumps = {asyncio.create_task(socket_to_websocket()), asyncio.create_task(websocket_to_socket())}
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        ended = await asyncio.gather(*pumps, return_exceptions=True)
        writer.close()
        with contextlib.suppress(Exception):
            await websocket.close()
    for outcome in ended:
        if isinstance(outcome, Exception) and not isinstance(
            outcome, (WebSocketDisconnect, OSError, RuntimeError)
        ):
            raise outcome  # a bug: let the server log it
