"""Sessions, one-time tickets and the admin token (tenancy/sessions.py): pure, in memory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bungalow.daemon.tenancy.sessions import (
    LOGIN_TICKET_SECONDS,
    TICKET_SECONDS,
    Sessions,
    TicketError,
    admin_token,
)


class Now:
    def __init__(self) -> None:
        self.at = 1_000_000.0

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def now() -> Now:
    return Now()


@pytest.fixture
def sessions(now: Now) -> Sessions:
    return Sessions(now, lifetime=600)


def test_a_session_lasts_its_lifetime(sessions: Sessions, now: Now) -> None:
    admin, member = sessions.open(None), sessions.open("p1")
    assert (admin.role, admin.project) == ("admin", None)
    assert (member.role, member.project) == ("project", "p1")
    assert len({admin.id, member.id, admin.csrf, member.csrf}) == 4
    now.at += 599
    assert sessions.find(admin.id) == admin
    now.at += 1
    assert sessions.find(admin.id) is None and sessions.find(member.id) is None


def test_unknown_ids_find_nothing(sessions: Sessions) -> None:
    session = sessions.open(None)
    for presented in (None, "", session.id[:-1], session.csrf):
        assert sessions.find(presented) is None


def test_csrf_must_match_exactly(sessions: Sessions) -> None:
    session = sessions.open(None)
    assert Sessions.csrf_matches(session, session.csrf)
    for presented in (None, "", session.csrf + "x", sessions.open(None).csrf):
        assert not Sessions.csrf_matches(session, presented)


def test_a_ticket_opens_one_websocket_once(sessions: Sessions) -> None:
    session = sessions.open("p1")
    ticket = sessions.issue(session, "console", "web")
    assert sessions.redeem(ticket.id, "console", "web") == session
    with pytest.raises(TicketError, match="missing, used or unknown"):
        sessions.redeem(ticket.id, "console", "web")


@pytest.mark.parametrize(("purpose", "vm"), [("exec", "web"), ("console", "db"), ("vnc", "db")])
def test_a_ticket_is_for_its_purpose_and_vm_only_and_is_spent_trying(
    sessions: Sessions, purpose: str, vm: str
) -> None:
    ticket = sessions.issue(sessions.open(None), "console", "web")
    with pytest.raises(TicketError, match="is for the console of web"):
        sessions.redeem(ticket.id, purpose, vm)  # type: ignore[arg-type]
    with pytest.raises(TicketError, match="used"):
        sessions.redeem(ticket.id, "console", "web")


def test_a_ticket_expires(sessions: Sessions, now: Now) -> None:
    session = sessions.open(None)
    late, fresh = sessions.issue(session, "exec", "web"), None
    now.at += TICKET_SECONDS - 1
    fresh = sessions.issue(session, "exec", "web")
    now.at += 1
    with pytest.raises(TicketError, match="expired"):
        sessions.redeem(late.id, "exec", "web")
    assert sessions.redeem(fresh.id, "exec", "web") == session


def test_a_ticket_dies_with_its_session(sessions: Sessions) -> None:
    session = sessions.open(None)
    ticket = sessions.issue(session, "vnc", "desk")
    sessions.close(session.id)
    with pytest.raises(TicketError):
        sessions.redeem(ticket.id, "vnc", "desk")


def test_closing_a_project_ends_only_its_sessions(sessions: Sessions) -> None:
    one, other, admin = sessions.open("p1"), sessions.open("p2"), sessions.open(None)
    sessions.close_project("p1")
    assert sessions.find(one.id) is None
    assert sessions.find(other.id) == other and sessions.find(admin.id) == admin


def test_a_login_ticket_makes_one_admin_session(sessions: Sessions, now: Now) -> None:
    ticket = sessions.issue_login()
    session = sessions.redeem_login(ticket)
    assert session is not None and session.role == "admin"
    assert sessions.redeem_login(ticket) is None
    late = sessions.issue_login()
    now.at += LOGIN_TICKET_SECONDS
    assert sessions.redeem_login(late) is None
    assert sessions.redeem_login(None) is None and sessions.redeem_login("") is None


def test_the_admin_token_is_made_once_for_the_owner_only(tmp_path: Path) -> None:
    token = admin_token(tmp_path)
    assert len(token) >= 40
    assert stat.S_IMODE((tmp_path / "dashboard.token").stat().st_mode) == 0o600
    assert admin_token(tmp_path) == token
    (tmp_path / "dashboard.token").write_text("")  # a crash between making and writing it
    assert admin_token(tmp_path) not in ("", token)
