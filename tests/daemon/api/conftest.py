"""The API in process: the app bungalowd serves, over the daemon's real object graph.

Requests go through ``httpx.ASGITransport``, which does not run the app's
lifespan: no recovery, reaper, metrics or heartbeat task runs, so nothing
happens between two requests but what the test does. Rows are written
straight into the store; no VM boots.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from bungalow.daemon.server.wiring import Daemon, app_for
from bungalow.daemon.state.lifecycle import VmState
from tests.daemon.records import put, vm


@pytest.fixture
def app(daemon: Daemon) -> FastAPI:
    return app_for(daemon)


def client(app: FastAPI, token: str | None = None) -> httpx.AsyncClient:
    """An HTTP client of ``app``: the admin's, or a project's with ``token``."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://bungalowd", headers=headers)


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    """Status, code and message of an error answer, which has exactly that shape."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    message = body["error"]["message"]
    assert message.endswith(".") and "\n" not in message, message
    return response.status_code, body["error"]["code"], message


def projects_and_vms(daemon: Daemon) -> dict[str, str]:
    """Projects p1 and p2, a VM of each (mine, theirs) and one of the admin's (admins);
    each project's token."""
    tokens = {name: daemon.services.projects.create(name)[1] for name in ("p1", "p2")}
    put(daemon.store, vm("mine", project="p1"), VmState.RUNNING)
    put(daemon.store, vm("theirs", project="p2"), VmState.RUNNING)
    put(daemon.store, vm("admins"), VmState.STOPPED)
    return tokens
