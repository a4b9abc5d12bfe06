"""A synchronous client for bungalowd's REST API over its Unix socket.

Every error the daemon reports comes back as the same :mod:`bungalow.errors`
class it was raised as, so callers catch meaning, not status codes.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bungalow.client import wire
from bungalow.client.autostart import ensure_daemon
from bungalow.client.wire import raise_event_error
from bungalow.paths import DataDir

__all__ = ["Client", "raise_event_error"]


def _raise_for(response: httpx.Response) -> None:
    if not response.is_success:
        response.read()
        raise wire.error_for(response)


class Client:
    """One connection pool to one daemon; starts the daemon when it is not running."""

    def __init__(
        self, data: DataDir | None = None, *, autostart: bool = True, token: str | None = None
    ) -> None:
        self.data = data or DataDir.from_env()
        if autostart:
            ensure_daemon(self.data)
        self.headers = wire.auth_headers(token)
        # A Unix socket carries no TLS: skipping the CA bundle saves ~50 ms a command.
        transport = httpx.HTTPTransport(uds=str(self.data.socket), verify=False)
        self._http = httpx.Client(
            transport=transport,
            base_url=wire.BASE_URL,
            timeout=httpx.Timeout(30.0, read=None),
            headers=self.headers,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise wire.connection_lost(self.data, exc) from None
        _raise_for(response)
        return wire.response_value(response)

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(method, path, **kwargs) as response:
                _raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise wire.connection_lost(self.data, exc) from None

    def events(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """NDJSON events of a streaming endpoint; an ``error`` event raises."""
        with self.stream(method, path, **kwargs) as response:
            for line in response.iter_lines():
                if (event := wire.parse_event(line)) is not None:
                    yield event

    # -- VMs -------------------------------------------------------------------------------------

    def list_vms(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/v1/vms")
        return result

    def get_vm(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/vms/{name}")
        return result

    def create_vm(self, **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/v1/vms", json=spec)
        return result

    def start_vm(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/v1/vms/{name}/start")
        return result

    def stop_vm(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"/v1/vms/{name}/stop", json={"timeout": timeout}
        )
        return result

    def remove_vm(self, name: str) -> None:
        self.request("DELETE", f"/v1/vms/{name}")

    # -- sandboxes -------------------------------------------------------------------------------

    def create_sandbox(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/v1/sandboxes", json=spec)
        return result

    def fork_vm(self, name: str, count: int) -> list[dict[str, Any]]:
        """``count`` running copies of the VM ``name``, each a VM of its own."""
        result: list[dict[str, Any]] = self.request(
            "POST", f"/v1/vms/{name}/fork", json={"count": count}
        )
        return result

    def lease_vm(
        self, name: str, timeout: str | float | None, on_expiry: str | None = None
    ) -> dict[str, Any]:
        """End the VM's lease ``timeout`` from now (a duration or seconds); None drops it."""
        body = {"timeout": timeout, "on_expiry": on_expiry}
        result: dict[str, Any] = self.request("POST", f"/v1/vms/{name}/lease", json=body)
        return result

    def renew_lease(self, name: str, duration: str | float) -> dict[str, Any]:
        """The VM's lease ends ``duration`` from now; refused if it has no lease."""
        body = {"duration": duration}
        result: dict[str, Any] = self.request("POST", f"/v1/vms/{name}/lease/renew", json=body)
        return result

    def set_idle(self, name: str, **policy: Any) -> dict[str, Any]:
        """Change the VM's own idle policy: after, action, cpu, disk, net."""
        result: dict[str, Any] = self.request("PATCH", f"/v1/vms/{name}/idle", json=policy)
        return result

    def suspend_vm(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/v1/vms/{name}/suspend")
        return result

    # -- sprawl ----------------------------------------------------------------------------------

    def sprawl(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/v1/sprawl")
        return result

    def apply_sprawl(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("POST", "/v1/sprawl/apply")
        return result

    def deleted_vms(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/v1/deleted")
        return result

    def restore_deleted(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/v1/deleted/{name}/restore")
        return result

    def logs(self, name: str, tail: int = 0) -> str:
        return str(self.request("GET", f"/v1/vms/{name}/logs", params={"tail": tail}) or "")

    def events_log(
        self, vm: str | None = None, since: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The audit log, oldest first; ``since`` is a duration (``1h``) or a date."""
        params: dict[str, Any] = {"limit": limit}
        if vm:
            params["vm"] = vm
        if since:
            params["since"] = since
        result: list[dict[str, Any]] = self.request("GET", "/v1/events", params=params)
        return result

    # -- inside the guest ------------------------------------------------------------------------

    def exec_events(
        self, name: str, argv: list[str], *, stdin: bytes | None = None, **options: Any
    ) -> Generator[dict[str, Any], None, None]:
        """Run ``argv`` in the VM; yields decoded events (stdout/stderr bytes, then exit)."""
        body = wire.exec_body(argv, stdin, options)
        for event in self.events("POST", f"/v1/vms/{name}/exec", json=body):
            yield wire.decode_exec_event(event)

    def stat(self, name: str, path: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", f"/v1/vms/{name}/files/stat", params={"path": path}
        )
        return result

    @contextmanager
    def download(self, name: str, path: str) -> Iterator[tuple[str, Iterator[bytes]]]:
        """``(kind, chunks)``: kind is ``file`` (raw bytes) or ``dir`` (a tar stream)."""
        with self.stream("GET", f"/v1/vms/{name}/files", params={"path": path}) as response:
            yield response.headers.get("x-bungalow-kind", "file"), response.iter_bytes()

    def upload_file(self, name: str, path: str, chunks: Iterator[bytes], mode: int = 0o644) -> None:
        self.request(
            "PUT", f"/v1/vms/{name}/files", params={"path": path, "mode": mode}, content=chunks
        )

    def upload_tar(self, name: str, dest: str, chunks: Iterator[bytes]) -> None:
        self.request("PUT", f"/v1/vms/{name}/files/tar", params={"path": dest}, content=chunks)

    # -- images and host -------------------------------------------------------------------------

    def list_images(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/v1/images")
        return result

    def get_image(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/images/{ref}")
        return result

    def recipes(self) -> list[str]:
        """Names of the images the daemon knows how to build."""
        result: list[str] = self.request("GET", "/v1/images/recipes")
        return result

    def build_image(self, name: str, force: bool = False) -> Iterator[dict[str, Any]]:
        return self.events("POST", "/v1/images/build", json={"name": name, "force": force})

    def import_image(self, path: Path, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", "/v1/images/import", json={"path": str(path.absolute()), "name": name}
        )
        return result

    def remove_image(self, ref: str) -> None:
        self.request("DELETE", f"/v1/images/{ref}")

    def host_info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/host")
        return result

    @property
    def socket_path(self) -> Path:
        return self.data.socket
