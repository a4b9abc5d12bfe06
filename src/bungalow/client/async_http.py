"""An asyncio client for bungalowd's REST API over its Unix socket.

It speaks exactly what :mod:`bungalow.client.http` speaks (the shared parts are in
:mod:`bungalow.client.wire`) and raises the same :mod:`bungalow.errors` classes; it
carries only the calls the async SDK makes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from bungalow.client import wire
from bungalow.client.autostart import ensure_daemon
from bungalow.paths import DataDir


async def _raise_for(response: httpx.Response) -> None:
    if not response.is_success:
        await response.aread()
        raise wire.error_for(response)


class AsyncClient:
    """One connection pool to one daemon, started (in a thread) before the first request."""

    def __init__(
        self, data: DataDir | None = None, *, autostart: bool = True, token: str | None = None
    ) -> None:
        self.data = data or DataDir.from_env()
        self._needs_daemon = autostart
        transport = httpx.AsyncHTTPTransport(uds=str(self.data.socket), verify=False)
        self._http = httpx.AsyncClient(
            transport=transport,
            base_url=wire.BASE_URL,
            timeout=httpx.Timeout(30.0, read=None),
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

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        await self._ensure_daemon()
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise wire.connection_lost(self.data, exc) from None
        await _raise_for(response)
        return wire.response_value(response)

    @asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        await self._ensure_daemon()
        try:
            async with self._http.stream(method, path, **kwargs) as response:
                await _raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise wire.connection_lost(self.data, exc) from None

    async def events(
        self, method: str, path: str, **kwargs: Any
    ) -> AsyncGenerator[dict[str, Any], None]:
        """NDJSON events of a streaming endpoint; an ``error`` event raises."""
        async with self.stream(method, path, **kwargs) as response:
            async for line in response.aiter_lines():
                if (event := wire.parse_event(line)) is not None:
                    yield event

    # -- VMs and sandboxes -----------------------------------------------------------------------

    async def get_vm(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/v1/vms/{name}")
        return result

    async def remove_vm(self, name: str) -> None:
        await self.request("DELETE", f"/v1/vms/{name}")

    async def create_sandbox(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/v1/sandboxes", json=spec)
        return result

    async def fork_vm(self, name: str, count: int) -> list[dict[str, Any]]:
        body = {"count": count}
        result: list[dict[str, Any]] = await self.request("POST", f"/v1/vms/{name}/fork", json=body)
        return result

    async def lease_vm(self, name: str, timeout: str | float | None) -> dict[str, Any]:
        body = {"timeout": timeout}
        result: dict[str, Any] = await self.request("POST", f"/v1/vms/{name}/lease", json=body)
        return result

    # -- inside the guest ------------------------------------------------------------------------

    async def exec_events(
        self, name: str, argv: list[str], *, stdin: bytes | None = None, **options: Any
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Run ``argv`` in the VM; yields decoded events (stdout/stderr bytes, then exit)."""
        body = wire.exec_body(argv, stdin, options)
        async for event in self.events("POST", f"/v1/vms/{name}/exec", json=body):
            yield wire.decode_exec_event(event)

    async def stat(self, name: str, path: str) -> dict[str, Any]:
        params = {"path": path}
        result: dict[str, Any] = await self.request(
            "GET", f"/v1/vms/{name}/files/stat", params=params
        )
        return result

    @asynccontextmanager
    async def download(
        self, name: str, path: str
    ) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        """``(kind, chunks)``: kind is ``file`` (raw bytes) or ``dir`` (a tar stream)."""
        async with self.stream("GET", f"/v1/vms/{name}/files", params={"path": path}) as response:
            yield response.headers.get("x-bungalow-kind", "file"), response.aiter_bytes()

    async def upload_file(self, name: str, path: str, data: bytes, mode: int = 0o644) -> None:
        params = {"path": path, "mode": mode}
        await self.request("PUT", f"/v1/vms/{name}/files", params=params, content=data)
