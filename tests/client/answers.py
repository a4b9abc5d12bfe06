"""What bungalowd answers, for tests that run the client, the SDK or the CLI without it.

:class:`Daemon` is an ``httpx.MockTransport`` handler: routes map to answers
shaped as the daemon's (tests/client/test_shapes.py checks the samples below
against its pydantic models), every request is kept, and a request nobody
expected fails the test. :func:`websocket_daemon` serves bungalowd's websockets
on a Unix socket in a thread, as the interactive sessions need a real one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, unix_serve

from bungalow import __version__
from bungalow.client.async_http import AsyncClient
from bungalow.client.http import Client
from bungalow.errors import BungalowError
from bungalow.paths import DataDir

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def json_answer(body: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


def error_answer(error: BungalowError) -> httpx.Response:
    """The daemon's answer for a raised error: its status and ``{"error": {code, message}}``."""
    return httpx.Response(
        error.http_status, json={"error": {"code": error.code, "message": error.message}}
    )


def ndjson_answer(events: Iterable[dict[str, Any]]) -> httpx.Response:
    lines = b"".join(json.dumps(event).encode() + b"\n" for event in events)
    return httpx.Response(200, content=lines, headers={"content-type": "application/x-ndjson"})


def output(stream: str, data: bytes) -> dict[str, Any]:
    """An exec output event as it travels: base64 data."""
    return {"type": stream, "data": base64.b64encode(data).decode()}


def exit_event(
    exit_code: int | None = 0, signal: int | None = None, timed_out: bool = False
) -> dict[str, Any]:
    return {"type": "exit", "exit_code": exit_code, "signal": signal, "timed_out": timed_out}


class Daemon:
    """A handler for ``httpx.MockTransport`` answering the routes it was given."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Answer] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, answer: Answer) -> Daemon:
        self.routes[(method, path)] = answer
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        return answer(request) if callable(answer) else answer

    def client(self, data: DataDir | None = None) -> Client:
        return Client(data, transport=httpx.MockTransport(self))

    def async_client(self) -> AsyncClient:
        return AsyncClient(transport=httpx.MockTransport(self))

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        """The requests made to one route, oldest first."""
        return [r for r in self.requests if (r.method, r.url.path) == (method, path)]

    def body(self, method: str, path: str) -> Any:
        """The JSON body of the last request to the route."""
        return json.loads(self.sent(method, path)[-1].content)


# -- samples of the daemon's answers -------------------------------------------------------------

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def vm_info(name: str = "web", **changes: Any) -> dict[str, Any]:
    """A VM as ``GET /v1/vms/NAME`` answers: running for an hour, 1 CPU, 512M."""
    vm = {
        "id": f"id-{name}", "name": name, "state": "running", "image": "debian-12",
        "image_id": "a1b2c3d4e5f6a7b8", "profile": "micro", "cpus": 1, "memory": 512 << 20,
        "disk_size": 4 << 30, "disk_used": 300 << 20, "ports": [], "accel": "tcg",
        "mac": "52:54:00:12:34:56", "pid": 4242, "created": NOW - 3600, "started": NOW - 3590,
        "error": None, "sandbox": False, "expires_at": None, "parent": None,
        "base_snapshot": None, "snapshots_used": 0, "pooled": False, "limits": {},
        "limits_pending": [], "project": None, "owner": "ada", "labels": {}, "created_by": "admin",
        "origin": "", "cost": {"so_far": 0.0412, "per_hour": 0.0412, "currency": "USD"},
        "on_expiry": None, "expires_in": None, "lease_warned": False, "idle": {},
        "quiet_for": 12.5, "operation": None, "networks": [], "cloud_init": False,
        "ssh_keys": [],
        "media": None, "firmware": "bios", "tpm": False, "memory_min": None, "balloon": False,
    }  # fmt: skip
    return {**vm, **changes}


def snapshot_info(name: str = "before", vm: str = "web", **changes: Any) -> dict[str, Any]:
    snapshot = {
        "id": f"snap-{name}", "name": name, "vm": vm, "kind": "full", "purpose": "user",
        "created": NOW - 60, "image_id": "a1b2c3d4e5f6a7b8", "cpus": 1, "memory": 512 << 20,
        "disk_size": 4 << 30, "accel": "tcg", "qemu": "QEMU emulator version 7.2.0",
        "size": 96 << 20, "base_snapshot": None, "used_by": [],
    }  # fmt: skip
    return {**snapshot, **changes}


def image_info(name: str = "debian-12") -> dict[str, Any]:
    return {
        "id": "a1b2c3d4e5f6a7b8c9d0", "name": name, "kind": "linux", "flavour": "micro",
        "size": 400 << 20, "virtual_size": 2 << 30, "created": NOW - 86400,
        "os_release": "Debian GNU/Linux 12", "kernel_version": "6.1.0", "used_by": ["web"],
        "firmware": "bios", "arch": "x86_64",
    }  # fmt: skip


def host_info() -> dict[str, Any]:
    return {
        "hostname": "lab", "version": __version__, "cpus": 2, "memory": 4 << 30,
        "memory_available": 3 << 30,
        "disk_total": 100 << 30, "disk_free": 60 << 30, "data_dir": "/var/lib/bungalow",
        "qemu": "QEMU emulator version 7.2.0",
        "accel": {"name": "tcg", "reason": "/dev/kvm is missing", "probe_ms": 1.5},
        "architectures": [
            {"name": "x86_64", "qemu_binary": "qemu-system-x86_64", "installed": True,
             "package": "qemu-system-x86", "binfmt": True,
             "accel": {"name": "tcg", "reason": "/dev/kvm is missing", "probe_ms": 1.5}},
            {"name": "aarch64", "qemu_binary": "qemu-system-aarch64", "installed": False,
             "package": "qemu-system-arm", "binfmt": False,
             "accel": {"name": "tcg", "reason": "aarch64 guests are emulated", "probe_ms": None}},
        ],
        "vms": 3, "vms_running": 2, "allocated_cpus": 2, "allocated_memory": 1 << 30,
        "allocated_disk": 8 << 30, "ratios": {"cpu": 4.0, "memory": 1.0, "disk": 1.0},
        "limit": {"cpus": 8, "memory": 4 << 30, "disk": 100 << 30},
        "free": {"cpus": 6, "memory": 3 << 30, "disk": 92 << 30},
        "firmwares": [
            {"name": "bios", "installed": True, "code": "/usr/share/seabios/bios-256k.bin",
             "vars_template": None, "package": "seabios"},
            {"name": "uefi", "installed": True, "code": "/usr/share/OVMF/OVMF_CODE_4M.fd",
             "vars_template": "/usr/share/OVMF/OVMF_VARS_4M.fd", "package": "ovmf"},
            {"name": "uefi-secure", "installed": False, "code": None, "vars_template": None,
             "package": "ovmf"},
        ],
        "memory_use": host_memory(),
    }  # fmt: skip


def host_memory() -> dict[str, Any]:
    return {
        "allocated": 1 << 30, "qemu_pss": 400 << 20, "guest_ram": 300 << 20,
        "guest_used": 120 << 20, "shared": 90 << 20, "ksm_profit": 88 << 20,
        "given_back": None, "overhead_median": 50 << 20,
        "ksm": {"mode": "auto", "holder": "bungalow", "claims": 1, "run": 1,
                "advisor_mode": "scan-time", "pages_to_scan": 500, "sleep_millisecs": 20,
                "full_scans": 3, "pages_shared": 5000, "pages_sharing": 23040,
                "ksmd_cpu_seconds": 12.5},
    }  # fmt: skip


def vm_overhead(name: str = "web", **changes: Any) -> dict[str, Any]:
    vm = {
        "vm": name, "memory": 512 << 20, "pss": 200 << 20, "rss": 260 << 20,
        "guest_ram": 150 << 20, "overhead": 50 << 20, "guest_used": 60 << 20,
        "ksm_merging": 80 << 20, "ksm_profit": 45 << 20, "given_back": None,
    }  # fmt: skip
    return {**vm, **changes}


def overhead() -> dict[str, Any]:
    return {
        "vms": [vm_overhead("web"), vm_overhead("db", guest_used=None, ksm_merging=None)],
        "host": host_memory(),
    }


def cost_row(group: str, total: float, **changes: Any) -> dict[str, Any]:
    row = {
        "group": group, "vm_id": None, "removed": False, "running_hours": 2.0,
        "stopped_hours": 0.5, "cpu": total / 2, "memory": total / 4, "disk": total / 4,
        "total": total, "intervals": 3,
    }  # fmt: skip
    return {**row, **changes}


def cost_report() -> dict[str, Any]:
    return {
        "by": "vm", "since": NOW - 7200, "until": NOW, "currency": "USD",
        "rates": {"vcpu_hour": 0.02, "memory_gib_hour": 0.0025, "disk_gib_month": 0.08},
        "rows": [cost_row("web", 0.5, vm_id="id-web"), cost_row("old", 0.25, removed=True)],
        "total": cost_row("total", 0.75),
    }  # fmt: skip


def project_info(name: str = "team-a", **quota: int | None) -> dict[str, Any]:
    return {
        "name": name,
        "created": NOW - 600,
        "quota": {"vcpus": None, "memory": None, "disk": None, "vms": None, **quota},
        "idle": {},
        "used": {"vcpus": 2, "memory": 1 << 30, "disk": 8 << 30, "vms": 2},
    }


def vm_metrics(name: str = "web", **changes: Any) -> dict[str, Any]:
    rates = {
        "cpu": 0.25, "steal": 0.02, "rss": float(300 << 20), "block_rd_bytes": 2048.0,
        "block_wr_bytes": float(1 << 20), "block_rd_reqs": 3.0, "block_wr_reqs": 7.0,
        "block_rd_times": 0.0, "block_wr_times": 0.0, "block_fl_reqs": 0.0,
        "block_fl_times": 0.0, "net_rx_bytes": 512.0, "net_tx_bytes": 0.0, "net_rx_pkts": 1.0,
        "net_tx_pkts": 0.0,
    }  # fmt: skip
    entry = {
        "vm": name, "noisy": False, "noisy_for": [], "throttled": [], "time": NOW,
        "stats": {"cpu.time": 9e9, "balloon.rss": float(300 << 20)}, "rates": rates,
    }  # fmt: skip
    return {**entry, **changes}


# -- websockets ----------------------------------------------------------------------------------

SocketHandler = Callable[[ServerConnection], None]
Refusal = Callable[[ServerConnection, Request], Response | None]


def refuse_handshake(status: int, body: bytes = b"") -> Refusal:
    """Answer the websocket handshake with HTTP ``status`` (as uvicorn does for old daemons)."""

    def refuse(_connection: ServerConnection, _request: Request) -> Response:
        headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body))})
        return Response(status, "Refused", headers, body)

    return refuse


@contextlib.contextmanager
def short_data_dir() -> Iterator[DataDir]:
    """A data directory with a path short enough for a Unix socket (108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="bgw-", dir="/tmp") as root:
        yield DataDir(Path(root))


@contextlib.contextmanager
def websocket_daemon(
    data: DataDir, handler: SocketHandler, refusal: Refusal | None = None
) -> Iterator[list[str]]:
    """Serve ``handler`` on ``data``'s socket; yields the paths the clients asked for."""
    paths: list[str] = []

    def serve(connection: ServerConnection) -> None:
        assert connection.request is not None
        paths.append(connection.request.path)
        handler(connection)

    server = unix_serve(serve, str(data.socket), process_request=refusal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield paths
    finally:
        server.shutdown()
        thread.join(timeout=10)
        data.socket.unlink(missing_ok=True)
