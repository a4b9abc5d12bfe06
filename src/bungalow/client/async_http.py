"""An asyncio client for bungalowd's REST API over its Unix socket.

It makes the calls of :mod:`bungalow.client.routes` exactly as
:class:`~bungalow.client.http.Client` does (what both share about the wire is
in :mod:`bungalow.client.wire`) and raises the same :mod:`bungalow.errors`
classes; it carries only the calls the async SDK makes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx

from bungalow.client import routes, wire
from bungalow.client.autostart import ensure_daemon
from bungalow.client.http import LIMITS, TIMEOUT, reading_within
from bungalow.client.results import ExecDeadline, overdue_exit
from bungalow.client.routes import Call
from bungalow.client.shapes import ExecEvent, FileStatInfo, VmInfo
from bungalow.paths import DataDir

T = TypeVar("T")


async def _raise_for(response: httpx.Response) -> None:
    if not response.is_success:
        await response.aread()
        raise wire.error_for(response)


class AsyncClient:
    """One connection pool to one daemon, started (in a thread) before the first request.

    The arguments are :class:`~bungalow.client.http.Client`'s; ``transport`` is
    an ``httpx.AsyncBaseTransport`` (``httpx.MockTransport`` is one).
    """

    def __init__(
        self,
        data: DataDir | None = None,
        *,
        autostart: bool = True,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.data = data or DataDir.from_env()
        self._needs_daemon = self._autostart = autostart and transport is None
        if transport is None:
            transport = httpx.AsyncHTTPTransport(
                uds=str(self.data.socket), verify=False, limits=LIMITS
            )
        self._http = httpx.AsyncClient(
            transport=transport,
            base_url=wire.BASE_URL,
            timeout=TIMEOUT,
            headers=wire.auth_headers(token),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def _ensure_daemon(self) -> None:
        # Starting bungalowd blocks for up to seconds; the event loop must not.
        if self._needs_daemon:
            await asyncio.to_thread(ensure_daemon, self.data)
            self._needs_daemon = False

    async def _send(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> Any:
        """Send one request; a daemon that is not there (killed, or not started yet) is
        started and the request sent again, once (see :func:`wire.worth_retrying`).
        DaemonError when the connection is lost."""
        await self._ensure_daemon()
        try:
            try:
                request = self._http.build_request(method, path, **kwargs)
                return await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if not (self._autostart and wire.worth_retrying(method, exc)):
                    raise
                await asyncio.to_thread(ensure_daemon, self.data)
                request = self._http.build_request(method, path, **kwargs)
                return await self._http.send(request, stream=stream)
        except httpx.ReadTimeout:
            raise
        except httpx.TransportError as exc:
            raise wire.connection_lost(self.data, exc) from None

    # -- the calls -------------------------------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A raw call: the answer's JSON, text or None. The methods below are typed."""
        response: httpx.Response = await self._send(method, path, **kwargs)
        await _raise_for(response)
        return wire.response_value(response)

    async def send(self, call: Call[T]) -> T:
        """Make one call of :mod:`bungalow.client.routes`; its answer has the call's shape."""
        answer: T = await self.request(call.method, call.path, **call.options)
        return answer

    @asynccontextmanager
    async def stream(
        self, call: Call[Any], *, read_timeout: float | None = None
    ) -> AsyncIterator[httpx.Response]:
        """The response, its body not read yet; a failed call raises before it is yielded.

        ``read_timeout``: give up after that many seconds of silence, with
        ``httpx.ReadTimeout``."""
        options = call.options | reading_within(read_timeout)
        response: httpx.Response = await self._send(call.method, call.path, stream=True, **options)
        try:
            await _raise_for(response)
            yield response
        except httpx.ReadTimeout:
            raise
        except httpx.TransportError as exc:
            raise wire.connection_lost(self.data, exc) from None
        finally:
            await response.aclose()

    # -- VMs and sandboxes -----------------------------------------------------------------------

    async def get_vm(self, name: str) -> VmInfo:
        return await self.send(routes.get_vm(name))

    async def remove_vm(self, name: str) -> None:
        await self.send(routes.remove_vm(name))

    async def create_sandbox(self, spec: Mapping[str, object]) -> VmInfo:
        return await self.send(routes.create_sandbox(spec))

    async def fork_vm(self, name: str, count: int) -> list[VmInfo]:
        """``count`` running copies of the VM ``name``, each a VM of its own."""
        return await self.send(routes.fork_vm(name, count))

    async def lease_vm(
        self, name: str, timeout: str | float | None, on_expiry: str | None = None
    ) -> VmInfo:
        """End the VM's lease ``timeout`` from now (a duration or seconds); None drops it."""
        return await self.send(routes.lease_vm(name, timeout, on_expiry))

    # -- inside the guest ------------------------------------------------------------------------

    async def exec_events(
        self, name: str, argv: list[str], *, stdin: bytes | None = None, **options: Any
    ) -> AsyncGenerator[ExecEvent, None]:
        """Run ``argv`` in the VM; yields output events (bytes), then the exit event.

        With a timeout the call ends in time whatever the daemon does, as
        :meth:`bungalow.Client.exec_events` does.
        """
        body = wire.exec_body(argv, stdin, options)
        deadline = ExecDeadline(options.get("timeout"))
        call = routes.exec_command(name, body)
        try:
            async with self.stream(call, read_timeout=deadline.wait) as response:
                lines = response.aiter_lines()
                while True:
                    try:  # each read on its own: a timeout must not span a yield
                        async with asyncio.timeout(deadline.remaining()):
                            line = await anext(lines)
                    except StopAsyncIteration:
                        return  # the stream ended without an exit: the caller says so
                    if (event := wire.parse_event(line)) is not None:
                        yield wire.decode_exec_event(event)
                        if event["type"] == "exit":
                            return
        except (TimeoutError, httpx.ReadTimeout):
            pass
        yield overdue_exit()

    async def stat(self, name: str, path: str, *, follow: bool = False) -> FileStatInfo:
        return await self.send(routes.stat(name, path, follow))

    @asynccontextmanager
    async def download(
        self, name: str, path: str, *, follow: bool = False
    ) -> AsyncIterator[wire.Download[AsyncIterator[bytes]]]:
        """A file, a folder or a link, as :meth:`bungalow.Client.download` gives them."""
        async with self.stream(routes.download(name, path, follow)) as response:
            yield wire.download_of(response.headers, response.aiter_bytes())

    async def upload_file(self, name: str, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write the file ``path`` (``mode``: its permission bits), making missing folders."""
        await self.send(routes.upload_file(name, path, data, mode))
