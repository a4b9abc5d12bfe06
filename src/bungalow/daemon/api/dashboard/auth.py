"""Who a browser is, on the dashboard's listener: its session cookie, CSRF, Origin, tickets.

- An HTTP request carries the ``bungalow_session`` cookie (HttpOnly, SameSite=Strict);
  one that changes anything (any method but GET and HEAD) also carries the session's
  CSRF secret in ``X-CSRF-Token``, which a page of another origin cannot read.
- A websocket carries no header a page can set: it presents a one-time ticket
  (``?ticket=``, from ``POST /auth/tickets``) and the browser's ``Origin``, which must be
  the listener's own (the ``Host`` it was reached at) or one of ``[dashboard] origins``.
- The session of a project is held to the project token's rules (api/access.py
  :func:`admit`, the same function); the admin's session is the admin on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from bungalow.daemon.api.access import App, Receive, Scope, Send, admit, refuse
from bungalow.daemon.state.audit import acting_as
from bungalow.daemon.tenancy.projects import Projects
from bungalow.daemon.tenancy.sessions import (
    Purpose,
    Session,
    Sessions,
    TicketError,
    is_admin_token,
)
from bungalow.errors import BungalowError, ForbiddenError, UnauthorizedError

COOKIE = "bungalow_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = ("GET", "HEAD")
#: The websockets of the API a ticket opens, by the path's last part.
_WEBSOCKETS: dict[str, Purpose] = {"console": "console", "exec/ws": "exec", "vnc/ws": "vnc"}
#: Seconds between two looks at whether an open websocket's session still stands.
SESSION_LOOK = 2.0
#: The close code of a websocket whose session ended (logout, expiry, project removed).
SESSION_ENDED = 4401


@dataclass(frozen=True)
class DashboardAuth:
    """The dashboard's gate: sessions, the admin token, projects, which Origins may come,
    and whether the listener speaks TLS (the cookie is then Secure)."""

    sessions: Sessions
    admin_token: str
    projects: Projects
    origins: tuple[str, ...] = ()
    secure: bool = False

    def login(self, token: object) -> Session:
        """A new session for the admin token or a project's; UnauthorizedError otherwise."""
        if isinstance(token, str) and token:
            if is_admin_token(self.admin_token, token):
                return self.sessions.open(None)
            project = self.projects.resolve(token)
            if project is not None:
                return self.sessions.open(project.name)
        raise UnauthorizedError(
            "The token is not valid; run `bungalow dashboard --token` on the host for the "
            "admin's, or ask the admin for your project's bgw_ token."
        )

    def session(self, scope: Scope) -> Session:
        """The request's live session; UnauthorizedError if it has none, or it ended (it
        expired, logged out, or its project was removed)."""
        return self.live(cookie(scope, COOKIE))

    def live(self, session_id: str | None) -> Session:
        """The session ``session_id`` if it still stands; else UnauthorizedError."""
        session = self.sessions.find(session_id)
        project = None if session is None else session.project
        if project is not None and self.projects.store.projects.find(project) is None:
            self.sessions.close_project(project)
            session = None
        if session is None:
            raise UnauthorizedError(
                "You are not logged in to the dashboard, or your session ended; log in again."
            )
        return session

    def lasts(self, session: Session) -> bool:
        """Whether ``session`` still stands: not logged out or expired, and its project
        (if any) not removed."""
        try:
            self.live(session.id)
        except UnauthorizedError:
            return False
        return True

    async def while_session_lasts(self, session: Session, run: Awaitable[None], send: Send) -> None:
        """Carry on a websocket (``run``, the app serving it) for as long as ``session``
        lasts: once it ends the websocket is ended and closed with :data:`SESSION_ENDED`,
        so a terminal left open does not outlive the logout."""
        serving = asyncio.ensure_future(run)
        while not (await asyncio.wait({serving}, timeout=SESSION_LOOK))[0]:
            if not self.lasts(session):
                # The close goes first, so that the client reads why (the app's own close,
                # on its way out, would say 1000); then the app ends what it served.
                with contextlib.suppress(Exception):  # the client may be gone already
                    await send({"type": "websocket.close", "code": SESSION_ENDED,
                                "reason": "the dashboard session ended"})  # fmt: skip
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
                return
        await serving

    def check_write(self, scope: Scope, session: Session) -> None:
        """ForbiddenError for a request that changes something without the session's CSRF
        secret, or from an Origin that is not allowed."""
        if scope.get("method", "GET") in _SAFE_METHODS:
            return
        self.check_origin(scope, required=False)
        if not self.sessions.csrf_matches(session, header(scope, CSRF_HEADER)):
            raise ForbiddenError(
                "The request has no valid X-CSRF-Token header; reload the dashboard and try again."
            )

    def check_origin(self, scope: Scope, *, required: bool) -> None:
        """ForbiddenError unless the ``Origin`` header is the listener's own (the scheme and
        ``Host`` it was reached at) or one of ``origins``; a request without one passes
        unless ``required`` (a browser always sends one on a websocket)."""
        origin = header(scope, "origin")
        if origin is None and not required:
            return
        scheme = "https" if self.secure else "http"
        own = f"{scheme}://{header(scope, 'host')}"
        if origin is None or (origin.rstrip("/") != own and origin.rstrip("/") not in self.origins):
            raise ForbiddenError(
                f"The Origin {origin or '(none)'} may not use this dashboard; open it at {own}, "
                "or add the origin to [dashboard] origins in config.toml."
            )

    def redeem(self, scope: Scope, purpose: Purpose, vm: str) -> Session:
        """The session of the websocket's ticket (Origin checked first); ForbiddenError for
        a bad Origin, UnauthorizedError for a missing, used or expired ticket."""
        self.check_origin(scope, required=True)
        try:
            return self.sessions.redeem(query(scope, "ticket"), purpose, vm)
        except TicketError as exc:
            raise UnauthorizedError(str(exc)) from None


class SessionScope:
    """The API's gate on the dashboard's listener, in place of the socket's ProjectScope:
    the session (or, for a websocket, its ticket) says who asks, and the project's rules
    apply as they do to its token."""

    def __init__(self, app: App, auth: DashboardAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            session = self._admit(scope)
        except BungalowError as exc:
            await refuse(scope, receive, send, exc)
            return
        scope.setdefault("state", {})["project"] = session.project
        actor = "admin" if session.project is None else f"project {session.project}"
        with acting_as(actor):
            if scope["type"] == "websocket":
                await self.auth.while_session_lasts(session, self.app(scope, receive, send), send)
            else:
                await self.app(scope, receive, send)

    def _admit(self, scope: Scope) -> Session:
        path = scope["path"]
        if scope["type"] == "websocket":
            vm, purpose = websocket_target(path)
            session = self.auth.redeem(scope, purpose, vm)
        else:
            session = self.auth.session(scope)
            self.auth.check_write(scope, session)
        if session.project is not None:
            admit(self.auth.projects, path, scope.get("method", "GET"), session.project)
        return session


def websocket_target(path: str) -> tuple[str, Purpose]:
    """The VM and the ticket's purpose of a websocket path (``/v1/vms/NAME/console``);
    ForbiddenError for a websocket the dashboard does not open."""
    parts = path.split("/", 4)  # "", "v1", "vms", NAME, rest
    if len(parts) == 5 and parts[:3] == ["", "v1", "vms"] and parts[4] in _WEBSOCKETS:
        return parts[3], _WEBSOCKETS[parts[4]]
    raise ForbiddenError(f"The dashboard opens no websocket at {path}.")


def session_answer(session: Session) -> dict[str, Any]:
    """What ``/auth/login`` and ``/auth/session`` answer."""
    expires = datetime.fromtimestamp(session.expires_at, UTC)
    return {
        "role": session.role,
        "project": session.project,
        "csrf": session.csrf,
        "expires_at": expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def header(scope: Scope, name: str) -> str | None:
    """The first header ``name`` (lower case) of the request, or None."""
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key == wanted:
            return str(value.decode("latin-1"))
    return None


def cookie(scope: Scope, name: str) -> str | None:
    raw = header(scope, "cookie")
    if raw is None:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header: as if there were none
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def query(scope: Scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None
