"""The dashboard's sessions, one-time tickets and the admin token: pure logic, in memory.

Who a browser is comes from one of two secrets: the admin token (a random secret made
once in the data directory, ``dashboard.token``, mode 0600: ``bungalow dashboard
--token`` prints it) or a project's ``bgw_`` token. Logging in with one makes a
:class:`Session` (its id goes in an HttpOnly cookie, its ``csrf`` secret in the page's
memory); ``bungalow dashboard`` makes a login ticket that makes an admin session once.

A :class:`Ticket` lets one websocket (console, exec, vnc) of one session reach one VM,
once, within :data:`TICKET_SECONDS`: a websocket carries no custom header, and a
cookie alone would let any page the browser opens try. Sessions and tickets live only
in the daemon's memory: a daemon restart logs everybody out. Secrets come from
:mod:`secrets`; every comparison with one is constant-time.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

Role = Literal["admin", "project"]
Purpose = Literal["console", "exec", "vnc"]
PURPOSES: tuple[Purpose, ...] = ("console", "exec", "vnc")

#: Seconds a websocket ticket may wait for its websocket.
TICKET_SECONDS = 30
#: Seconds the URL ``bungalow dashboard`` prints keeps working (time to paste it).
LOGIN_TICKET_SECONDS = 300
TOKEN_FILE = "dashboard.token"

V = TypeVar("V")


@dataclass(frozen=True)
class Session:
    """One browser's login: who (``project`` None for the admin), its CSRF secret, and
    when it ends (seconds since the epoch, on the daemon's clock)."""

    id: str
    role: Role
    project: str | None
    csrf: str
    expires_at: float


@dataclass(frozen=True)
class Ticket:
    """A one-time pass for one websocket: ``purpose`` on ``vm`` for ``session``."""

    id: str
    session: str
    purpose: Purpose
    vm: str
    expires_at: float


class TicketError(Exception):
    """A ticket that does not exist, was used, expired, or names another VM or purpose;
    its sentence says so."""


class Sessions:
    """Sessions and tickets, kept in memory; ``now`` is the daemon's clock (seconds)."""

    def __init__(self, now: Callable[[], float], lifetime: float) -> None:
        self._now = now
        self.lifetime = lifetime
        self._sessions: dict[str, Session] = {}
        self._tickets: dict[str, Ticket] = {}
        self._logins: dict[str, float] = {}  # login ticket -> when it expires

    def open(self, project: str | None) -> Session:
        """A new session for the admin (``project`` None) or one project."""
        self._forget_expired()
        session = Session(
            id=secrets.token_urlsafe(32),
            role="admin" if project is None else "project",
            project=project,
            csrf=secrets.token_urlsafe(32),
            expires_at=self._now() + self.lifetime,
        )
        self._sessions[session.id] = session
        return session

    def find(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, closed or expired)."""
        if not session_id:
            return None
        for known, session in list(self._sessions.items()):
            if hmac.compare_digest(known, session_id):
                if session.expires_at <= self._now():
                    del self._sessions[known]
                    return None
                return session
        return None

    def close(self, session_id: str) -> None:
        """End the session (logout) and every ticket it holds; nothing if there is none."""
        session = self.find(session_id)
        if session is None:
            return
        del self._sessions[session.id]
        self._tickets = {k: t for k, t in self._tickets.items() if t.session != session.id}

    def close_project(self, project: str) -> None:
        """End every session of ``project`` (it was removed)."""
        for session in [s for s in self._sessions.values() if s.project == project]:
            self.close(session.id)

    @staticmethod
    def csrf_matches(session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(session.csrf, presented)

    def issue(self, session: Session, purpose: Purpose, vm: str) -> Ticket:
        """A ticket for one websocket of ``session`` to ``vm``."""
        self._forget_expired()
        ticket = Ticket(
            secrets.token_urlsafe(24), session.id, purpose, vm, self._now() + TICKET_SECONDS
        )
        self._tickets[ticket.id] = ticket
        return ticket

    def redeem(self, ticket_id: str | None, purpose: Purpose, vm: str) -> Session:
        """The session of the ticket, which is used up; TicketError if it is missing,
        used, expired, bound to another purpose or VM, or its session has ended.

        A ticket presented for the wrong VM or purpose is used up all the same: whoever
        holds it is not doing what it was issued for."""
        again = "ask the dashboard for a new one (reload the page)"
        ticket = self._take(self._tickets, ticket_id)
        if ticket is None:
            raise TicketError(f"The ticket is missing, used or unknown; {again}.")
        if ticket.expires_at <= self._now():
            raise TicketError(f"The ticket expired after {TICKET_SECONDS} s; {again}.")
        if ticket.purpose != purpose or ticket.vm != vm:
            raise TicketError(
                f"The ticket is for the {ticket.purpose} of {ticket.vm}, not the {purpose} "
                f"of {vm}; {again}."
            )
        session = self.find(ticket.session)
        if session is None:
            raise TicketError("The ticket's session has ended; log in to the dashboard again.")
        return session

    def issue_login(self) -> str:
        """A one-time login ticket for the admin, good for LOGIN_TICKET_SECONDS."""
        self._forget_expired()
        ticket = secrets.token_urlsafe(32)
        self._logins[ticket] = self._now() + LOGIN_TICKET_SECONDS
        return ticket

    def redeem_login(self, ticket_id: str | None) -> Session | None:
        """A new admin session for a login ticket not yet used nor expired; else None."""
        expires_at = self._take(self._logins, ticket_id)
        if expires_at is None or expires_at <= self._now():
            return None
        return self.open(None)

    @staticmethod
    def _take(table: dict[str, V], key: str | None) -> V | None:
        """Remove and return the entry whose key equals ``key`` (compared in constant time)."""
        if not key:
            return None
        for known in list(table):
            if hmac.compare_digest(known, key):
                return table.pop(known)
        return None

    def _forget_expired(self) -> None:
        now = self._now()
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}
        self._tickets = {k: t for k, t in self._tickets.items() if t.expires_at > now}
        self._logins = {k: at for k, at in self._logins.items() if at > now}


def admin_token(data_root: Path) -> str:
    """The admin's dashboard token, made once in ``data_root/dashboard.token`` (mode 0600)
    and read from there afterwards."""
    path = data_root / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if token:
            return token
        path.unlink()  # an empty file left by a crash between open and write: make it again
        return admin_token(data_root)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def is_admin_token(expected: str, presented: str) -> bool:
    return hmac.compare_digest(expected.encode(), presented.encode())
