"""A websocket lasts as long as its dashboard session: a logout ends an open terminal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bungalow.daemon.api.dashboard import auth as dashboard_auth
from bungalow.daemon.api.dashboard.auth import SESSION_ENDED, DashboardAuth
from bungalow.daemon.server.wiring import Daemon


async def _terminal(ended: asyncio.Event) -> None:
    try:
        await asyncio.sleep(3600)  # a bridge carrying bytes for as long as it is let
    finally:
        ended.set()


async def test_an_open_websocket_ends_with_its_session(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard_auth, "SESSION_LOOK", 0.05)
    services = daemon.services
    auth = DashboardAuth(services.sessions, services.dashboard_token, services.projects)
    session = auth.sessions.open(None)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    ended = asyncio.Event()
    serving = asyncio.create_task(auth.while_session_lasts(session, _terminal(ended), send))
    await asyncio.sleep(0.2)
    assert not serving.done() and not sent  # the session stands: the terminal goes on
    auth.sessions.close(session.id)  # logout
    await asyncio.wait_for(serving, timeout=5)
    assert ended.is_set()
    assert sent == [
        {"type": "websocket.close", "code": SESSION_ENDED, "reason": "the dashboard session ended"}
    ]


async def test_a_websocket_that_ends_by_itself_just_ends(daemon: Daemon) -> None:
    services = daemon.services
    auth = DashboardAuth(services.sessions, services.dashboard_token, services.projects)
    session = auth.sessions.open(None)

    async def send(_message: dict[str, Any]) -> None:
        raise AssertionError("nothing is sent for a websocket that ended by itself")

    await asyncio.wait_for(auth.while_session_lasts(session, asyncio.sleep(0.01), send), 5)
