"""A synchronous client for bungalowd's REST API over its Unix socket.

Every error the daemon reports comes back as the same :mod:`bungalow.errors`
class it was raised as, so callers catch meaning, not status codes.
"""

from __future__ import annotations

import base64
import json
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _skip_httpx_command_line() -> None:
    """Keep httpx from importing its own command-line tool.

    ``import httpx`` loads ``httpx._main`` (click, rich, pygments) whenever
    those are installed, as they are here; that is about 70 ms on every
    ``bungalow`` command, and boot-to-exec counts two of them. bungalow never
    runs httpx's tool, so an empty module with its one name takes its place.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    module = types.ModuleType("httpx._main")

    def main() -> None:  # pragma: no cover - httpx's CLI, which bungalow does not ship
        raise SystemExit("httpx's command-line tool is not available inside bungalow.")

    module.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = module


_skip_httpx_command_line()

import httpx  # noqa: E402

from bungalow.client.autostart import ensure_daemon  # noqa: E402
from bungalow.errors import BungalowError, DaemonError, error_from_code  # noqa: E402
from bungalow.paths import DataDir  # noqa: E402

_BASE = "http://bungalowd"


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        response.read()
        body = response.json()
        error = body["error"]
        raise error_from_code(error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        pass
    raise BungalowError(f"bungalowd answered {response.status_code}: {response.text[:200]}")


def raise_event_error(event: dict[str, Any]) -> None:
    if event.get("type") == "error":
        raise error_from_code(str(event.get("code")), str(event.get("message")))


class Client:
    """One connection pool to one daemon; starts the daemon when it is not running."""

    def __init__(self, data: DataDir | None = None, *, autostart: bool = True) -> None:
        self.data = data or DataDir.from_env()
        if autostart:
            ensure_daemon(self.data)
        # A Unix socket carries no TLS: skipping the CA bundle saves ~50 ms a command.
        transport = httpx.HTTPTransport(uds=str(self.data.socket), verify=False)
        self._http = httpx.Client(
            transport=transport, base_url=_BASE, timeout=httpx.Timeout(30.0, read=None)
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
            raise DaemonError(
                f"Lost the connection to bungalowd ({exc}); see {self.data.daemon_log}."
            ) from None
        _raise_for(response)
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(method, path, **kwargs) as response:
                _raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise DaemonError(
                f"Lost the connection to bungalowd ({exc}); see {self.data.daemon_log}."
            ) from None

    def events(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """NDJSON events of a streaming endpoint; an ``error`` event raises."""
        with self.stream(method, path, **kwargs) as response:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                raise_event_error(event)
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

    def logs(self, name: str, tail: int = 0) -> str:
        return str(self.request("GET", f"/v1/vms/{name}/logs", params={"tail": tail}) or "")

    def events_log(self, vm: str | None = None) -> list[dict[str, Any]]:
        params = {"vm": vm} if vm else {}
        result: list[dict[str, Any]] = self.request("GET", "/v1/events", params=params)
        return result

    # -- inside the guest ------------------------------------------------------------------------

    def exec_events(
        self, name: str, argv: list[str], *, stdin: bytes | None = None, **options: Any
    ) -> Iterator[dict[str, Any]]:
        """Run ``argv`` in the VM; yields decoded events (stdout/stderr bytes, then exit)."""
        body: dict[str, Any] = {"argv": argv, **options}
        if stdin is not None:
            body["stdin"] = base64.b64encode(stdin).decode()
        for event in self.events("POST", f"/v1/vms/{name}/exec", json=body):
            if "data" in event:
                event["data"] = base64.b64decode(event["data"])
            yield event

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
