"""The dashboard's TCP listener: a second uvicorn server in the daemon's event loop.

It serves api/dashboard/app.py on ``[dashboard] listen`` (127.0.0.1:8250 by
default), with TLS beyond loopback (dashboard_tls.py). bungalowd opens it at start
when ``enabled``, or when the admin runs ``bungalow dashboard`` (``POST
/v1/dashboard``), and closes it when it shuts down; a socket of the daemon's own,
it dies with a killed daemon and needs no recovery. A port that is taken is one
sentence (in the daemon's log at start, in ``bungalow dashboard``'s answer),
never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from bungalow.daemon.api.access import App
from bungalow.daemon.server import dashboard_tls
from bungalow.daemon.server.dashboard_config import DashboardConfig
from bungalow.errors import UserError

log = logging.getLogger("bungalowd")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to the daemon's own server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DashboardListener:
    """Opens and closes the dashboard's listener; ``app`` makes its ASGI app when first
    opened (the app needs every service, made after this), told whether it speaks TLS."""

    def __init__(
        self, config: DashboardConfig, data_root: Path, app: Callable[[bool], App]
    ) -> None:
        self.config = config
        self.data_root = data_root
        self._app = app
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._base = ""
        self._fingerprint: str | None = None
        self._opening = asyncio.Lock()

    @property
    def is_open(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def _opened_mark(self) -> Path:
        """Present while a dashboard opened at run time (``bungalow dashboard``) should be
        open: a daemon killed with it open leaves the file, and the next one reopens it."""
        return self.data_root / "dashboard.opened"

    async def open_if_enabled(self) -> None:
        """At the daemon's start: open if the config says so, or if the daemon before was
        killed with a dashboard opened at run time; a failure is logged."""
        if not self.config.enabled and not self._opened_mark.exists():
            return
        try:
            base, _ = await self.open()
        except UserError as exc:
            log.error("%s", exc.message)
        else:
            log.info("dashboard on %s", base)

    async def open(self) -> tuple[str, str | None]:
        """Listen if not yet; the base URL and the TLS fingerprint (None without TLS).
        UserError with a sentence if the address cannot be listened on."""
        async with self._opening:
            if self.is_open:
                return self._base, self._fingerprint
            config = self.config
            host = config.host_now()
            listener = self._bind(host, config.port)
            try:
                cert, key = await self._tls_pair(host)
                server = _Server(self._uvicorn_config(cert, key))
            except BaseException:
                listener.close()
                raise
            port = listener.getsockname()[1]
            scheme = "https" if cert else "http"
            if host in ("0.0.0.0", "::"):
                host = socket.gethostname()
            self._base = f"{scheme}://{_bracketed(host)}:{port}"
            self._fingerprint = dashboard_tls.fingerprint(cert) if cert else None
            self._server = server
            self._task = asyncio.create_task(server.serve(sockets=[listener]), name="dashboard")
            while not server.started and not self._task.done():
                await asyncio.sleep(0.01)
            if self._task.done():
                raise UserError(
                    f"The dashboard could not start on {self._base}; see bungalowd's log."
                )
            if not config.enabled:
                self._opened_mark.touch()
            return self._base, self._fingerprint

    def _bind(self, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)  # a name's own error
            return socket.create_server((host, port), family=family, backlog=128)
        except OSError as exc:
            raise UserError(bind_refusal(host, port, exc)) from None

    async def _tls_pair(self, host: str) -> tuple[Path | None, Path | None]:
        config = self.config
        if config.tls_cert is not None and config.tls_key is not None:
            return config.tls_cert, config.tls_key
        if not config.tls(host):
            return None, None
        return await asyncio.to_thread(dashboard_tls.self_signed, self.data_root, host)

    def _uvicorn_config(self, cert: Path | None, key: Path | None) -> uvicorn.Config:
        config = uvicorn.Config(
            self._app(cert is not None), lifespan="off", log_level="warning", log_config=None,
            timeout_graceful_shutdown=2, server_header=False, proxy_headers=False,
            ssl_certfile=cert, ssl_keyfile=key,
        )  # fmt: skip
        try:
            config.load()
        except (ssl.SSLError, OSError) as exc:
            raise UserError(
                f"The dashboard's TLS pair {cert} and {key} cannot be used ({exc}); give a PEM "
                "certificate and its key in tls_cert and tls_key."
            ) from None
        return config

    async def close(self) -> None:
        """Stop listening and end every connection (at the daemon's shutdown, which a
        daemon stopped on purpose reaches: its successor opens a dashboard only if asked)."""
        self._opened_mark.unlink(missing_ok=True)
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5)


def bind_refusal(host: str, port: int, exc: OSError) -> str:
    """The sentence for a listener that could not bind ``host``:``port`` (``exc`` from
    bind(2) or getaddrinfo(3)): what went wrong, and what to change for that cause."""
    where = f"{_bracketed(host)}:{port}"
    change = "listen in the [dashboard] section of config.toml and restart bungalowd"
    if isinstance(exc, socket.gaierror):
        return (
            f"The dashboard cannot listen on {where}: {host} is not an address this host can "
            f"find ({exc.strerror}); set {change} to one of this host's addresses."
        )
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"The dashboard cannot listen on {where} ({reason}): {host} is not one of this "
            f"host's addresses; set {change} to one of them (ip -brief address lists them)."
        )
    return (
        f"The dashboard cannot listen on {where} ({reason}); free that port, or set another "
        f"with {change}."
    )


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
