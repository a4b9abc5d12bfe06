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
    either side ends; then close both."""

    async def socket_to_websocket() -> None:
        while data := await reader.read(CHUNK):
            await websocket.send_bytes(data)

    task = asyncio.create_task(socket_to_websocket())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes") or (message.get("text") or "").encode()
            if data:
                on_input()
                writer.write(data)
                await writer.drain()
    except (WebSocketDisconnect, OSError):
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        writer.close()
        with contextlib.suppress(Exception):
            await websocket.close()
