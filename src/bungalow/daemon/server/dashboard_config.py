"""The ``[dashboard]`` table of config.toml: where the web dashboard listens and how."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bungalow.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8250
_KEYS = ("enabled", "listen", "tls_cert", "tls_key", "session_minutes", "origins")


@dataclass(frozen=True)
class DashboardConfig:
    """``enabled``: open the listener at start; ``host``/``port``: where; ``tls_cert`` and
    ``tls_key``: the pair to serve (None: plain HTTP on loopback, a self-signed pair made
    once beyond it); ``session_minutes``: how long a login lasts; ``origins``: Origins
    allowed besides the listener's own (``https://vms.example.org``)."""

    enabled: bool = False
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_minutes: float = 720.0
    origins: tuple[str, ...] = ()

    def host_now(self) -> str:
        """Where to listen now: ``host``, unless the dashboard is not ``enabled`` and the
        host is beyond loopback (opened at run time by ``bungalow dashboard``, it then
        listens on 127.0.0.1: reaching it from elsewhere is for the config to say)."""
        return self.host if self.enabled or is_loopback(self.host) else DEFAULT_HOST

    def tls(self, host: str) -> bool:
        """Whether a listener on ``host`` speaks TLS: always beyond loopback, or when
        given a pair."""
        return not is_loopback(host) or self.tls_cert is not None


def is_loopback(host: str) -> bool:
    """Whether only this host can reach ``host`` (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_dashboard(table: dict[str, Any], path: Path) -> DashboardConfig:
    """The ``[dashboard]`` table; UserError naming the key that is wrong."""
    for key in table:
        if key not in _KEYS:
            raise UserError(
                f"dashboard.{key} in {path} is not a setting; the dashboard's are "
                f"{', '.join(_KEYS)}."
            )
    enabled = table.get("enabled", False)
    if not isinstance(enabled, bool):
        raise UserError(f"dashboard.enabled in {path} must be true or false.")
    host, port = parse_listen(table.get("listen", f"{DEFAULT_HOST}:{DEFAULT_PORT}"), path)
    cert, pem_key = _path(table, "tls_cert", path), _path(table, "tls_key", path)
    if (cert is None) != (pem_key is None):
        raise UserError(
            f"dashboard.tls_cert and dashboard.tls_key in {path} go together; give both."
        )
    minutes = table.get("session_minutes", 720)
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or minutes <= 0:
        raise UserError(
            f"dashboard.session_minutes in {path} must be a positive number such as 720."
        )
    origins = table.get("origins", [])
    if not isinstance(origins, list) or not all(
        isinstance(o, str) and o.startswith(("http://", "https://")) for o in origins
    ):
        raise UserError(
            f'dashboard.origins in {path} must be a list of origins such as ["https://host:8250"].'
        )
    return DashboardConfig(
        enabled=enabled, host=host, port=port, tls_cert=cert, tls_key=pem_key,
        session_minutes=float(minutes), origins=tuple(o.rstrip("/") for o in origins),
    )  # fmt: skip


def parse_listen(value: object, path: Path) -> tuple[str, int]:
    """``host:port`` (``[::1]:8250`` for IPv6) as a pair; port 0 is any free port."""
    text = value if isinstance(value, str) else ""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UserError(
            f'dashboard.listen in {path} must be host:port such as "127.0.0.1:8250", not {value!r}.'
        )
    return host, int(port)


def _path(table: dict[str, Any], name: str, path: Path) -> Path | None:
    value = table.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not Path(value).is_absolute():
        raise UserError(f"dashboard.{name} in {path} must be an absolute path to a PEM file.")
    if not Path(value).is_file():
        raise UserError(f"dashboard.{name} in {path} names {value}, which is not a file.")
    return Path(value)
