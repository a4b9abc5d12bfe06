"""A one-time TCP door to a VM's VNC server: ``bungalow vnc``.

QEMU's VNC server listens only on a Unix socket in the run directory
(``RunFiles.vnc``), password required. A :class:`VncRelay` is a listener on
127.0.0.1 (a free port) that carries the first connection to that socket and then
stops listening; the password the daemon set for it expires when that connection
ends, or after ``lifetime`` seconds if nobody came (QEMU itself holds the expiry
too, so a daemon killed meanwhile leaves no password that works). The listener is
the daemon's own socket: it dies with a killed daemon, and the VM's runtime closes
it when the VM stops or is removed and when the daemon shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: Seconds a ``vnc`` endpoint waits for its one connection.
LIFETIME = 300
CHUNK = 1 << 16
#: Expires the VM's VNC password (bound to the VM's monitor by whoever opens the relay).
Expire = Callable[[], Awaitable[None]]


class VncRelay:
    """A listener on 127.0.0.1 relaying one connection to ``socket_path``; build it with
    :meth:`open`, end it with :meth:`close` (idempotent)."""

    def __init__(self, socket_path: Path, expire: Expire) -> None:
        self._socket_path = socket_path
        self._expire = expire
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._used = False
        self.port = 0

    @classmethod
    async def open(cls, socket_path: Path, expire: Expire, lifetime: float = LIFETIME) -> VncRelay:
        """Listen on a free port of 127.0.0.1 (``port``) for ``lifetime`` seconds at most."""
        relay = cls(socket_path, expire)
        relay._server = await asyncio.start_server(relay._serve, "127.0.0.1", 0)
        relay.port = relay._server.sockets[0].getsockname()[1]
        relay._spawn(relay._time_out(lifetime))
        return relay

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _time_out(self, lifetime: float) -> None:
        await asyncio.sleep(lifetime)
        if not self._used:
            self._stop_listening()
            await self._expire_quietly()

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _expire_quietly(self) -> None:
        try:
            await self._expire()
        except Exception as exc:  # the VM is going; its QEMU's own expiry still holds
            log.info("could not expire the VNC password: %s", exc)

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        if self._used:
            client_out.close()
            return
        self._used = True
        self._stop_listening()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            vnc_in, vnc_out = await asyncio.open_unix_connection(str(self._socket_path))
        except OSError as exc:
            log.warning("could not reach the VNC server at %s: %s", self._socket_path, exc)
            client_out.close()
            await self._expire_quietly()
            return
        try:
            pumps = [
                asyncio.create_task(_pump(client_in, vnc_out)),
                asyncio.create_task(_pump(vnc_in, client_out)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
        finally:
            for writer in (client_out, vnc_out):
                writer.close()
            await self._expire_quietly()

    async def close(self) -> None:
        """Stop listening and end the connection it carries, if any."""
        self._stop_listening()
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
