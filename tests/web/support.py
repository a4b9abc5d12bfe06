"""Reaching a bungalowd's dashboard from a test: its origin, a login, an HTTP session, websockets.

:class:`Dashboard` wraps one installation (:class:`tests.conftest.Env`) whose
config.toml turns the dashboard listener on at a free loopback port. What it
gives a test is what a browser has: the one-time login URL ``bungalow dashboard``
prints, the admin token of ``bungalow dashboard --token``, and an HTTP session
(cookie + CSRF token, as ``POST /auth/login`` answers) for the refusal tests
that need no browser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import NO_KSM, ROOT, Env

#: Where the browser tests put a screenshot of each page (git-ignored).
SCREENS = ROOT / "artifacts" / "screens"
#: Debian's chromium (scripts/install's debs): Playwright drives it by its path.
CHROMIUM = Path("/usr/bin/chromium")
#: Booting under TCG on a busy 2-CPU host takes far longer than the 2-6 s of an idle one.
BOOT_TIMEOUT_MS = 240_000
#: What the API's refusals are: one sentence, from a capital to a full stop.
SENTENCE = re.compile(r"^[A-Z].{10,}[.]$")


def dashboard_config(port: int) -> str:
    """config.toml of a test daemon: no warm sandbox pool, no KSM (host-wide: a test daemon
    must not turn it on), the dashboard on ``port``."""
    return (
        f'[sandboxes]\npool = 0\n\n[dashboard]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
        + NO_KSM
    )


@dataclass
class Session:
    """A logged-in HTTP client of the dashboard listener, and the CSRF token its login gave."""

    http: httpx.Client
    csrf: str
    role: str
    project: str | None

    def ticket(self, purpose: str, vm: str) -> dict[str, Any]:
        """``POST /auth/tickets``' answer; fails the test on anything but 200."""
        reply = self.http.post(
            "/auth/tickets",
            json={"purpose": purpose, "vm": vm},
            headers={"X-CSRF-Token": self.csrf},
        )
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    @property
    def cookie(self) -> str:
        """The ``Cookie`` header a browser would send along on a websocket handshake."""
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())


class Dashboard:
    """One installation's dashboard listener, as a browser and a CLI user reach it."""

    def __init__(self, env: Env, port: int) -> None:
        self.env = env
        self.origin = f"http://127.0.0.1:{port}"

    def login_url(self) -> str:
        """A fresh one-time login URL, as ``bungalow dashboard --json`` prints it."""
        answer = json.loads(self.env.run("dashboard", "--json").stdout)
        url = str(answer["url"])
        assert url.startswith(f"{self.origin}/login?ticket="), answer
        return url

    def admin_token(self) -> str:
        return self.env.run("dashboard", "--token").stdout.strip()

    @contextmanager
    def session(self, token: str | None = None) -> Iterator[Session]:
        """Logged in with ``token`` (the admin's when None) over ``POST /auth/login``."""
        with httpx.Client(base_url=self.origin, timeout=60) as http:
            reply = http.post("/auth/login", json={"token": token or self.admin_token()})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            yield Session(http, body["csrf"], body["role"], body["project"])

    def websocket(
        self, path: str, *, origin: str | None = None, cookie: str = ""
    ) -> ClientConnection:
        """A websocket to ``path`` on the listener, sending ``origin`` (its own by default)."""
        headers = {"Cookie": cookie} if cookie else {}
        return connect(
            f"ws://127.0.0.1:{self.origin.rsplit(':', 1)[1]}{path}",
            origin=origin or self.origin,
            additional_headers=headers,
            open_timeout=60,
        )

    def refusal_of(self, path: str, *, origin: str | None = None, cookie: str = "") -> int:
        """The close code a websocket to ``path`` ends with before any byte of a VM flows.

        The listener accepts the handshake, may say why in one JSON error frame (as the
        API's websockets do), and closes with 4401 or 4403: a browser sees a close code,
        never an HTTP status, on a websocket. A refusal of the handshake itself counts as
        its HTTP status, so a test names what it got.
        """
        try:
            with self.websocket(path, origin=origin, cookie=cookie) as socket:
                while True:
                    try:
                        frame = socket.recv(timeout=30)
                    except ConnectionClosed as closed:
                        return closed.rcvd.code if closed.rcvd is not None else 1006
                    if not isinstance(frame, str) or json.loads(frame).get("type") != "error":
                        raise AssertionError(f"{path} carried {frame!r} instead of a refusal")
                    assert SENTENCE.match(json.loads(frame)["message"]), frame
        except InvalidStatus as refused:
            return refused.response.status_code


def shoot(page: Page, name: str) -> Path:
    """Save what ``page`` shows as ``artifacts/screens/<name>.png`` (the issue's artifacts)."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def error_message(reply: httpx.Response) -> str:
    """The one sentence of the API's error body (``{"error": {..., "message": ...}}``)."""
    return str(reply.json()["error"]["message"])
