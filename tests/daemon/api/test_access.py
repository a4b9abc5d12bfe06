"""Who may ask what (api/access.py): a project's token sees its own VMs and nothing of the
admin's; a bad token is refused over HTTP and over a websocket alike."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from fastapi import FastAPI

from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from tests.daemon.api.conftest import client, error_of, projects_and_vms
from tests.daemon.records import SetClock, put, vm


async def test_a_project_lists_only_its_own_vms(app: FastAPI, daemon: Daemon) -> None:
    tokens = projects_and_vms(daemon)
    async with client(app, tokens["p1"]) as member, client(app) as admin:
        assert [v["name"] for v in (await member.get("/v1/vms")).json()] == ["mine"]
        assert (await member.get("/v1/vms/mine")).json()["project"] == "p1"
        everyone = (await admin.get("/v1/vms")).json()
    assert sorted(v["name"] for v in everyone) == ["admins", "mine", "theirs"]


@pytest.mark.parametrize("name", ["theirs", "admins", "ghost"])
async def test_another_projects_vm_is_as_if_it_did_not_exist(
    app: FastAPI, daemon: Daemon, name: str
) -> None:
    tokens = projects_and_vms(daemon)
    async with client(app, tokens["p1"]) as member:
        for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/stop"), ("GET", "/logs")):
            answer = await member.request(method, f"/v1/vms/{name}{path}")
            assert error_of(answer) == (404, "vm_not_found", f"There is no VM named {name}; "
                                        "`bungalow ls` lists the VMs that exist.")  # fmt: skip
    assert daemon.store.vms.get("theirs").state is VmState.RUNNING


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/projects"),
        ("POST", "/v1/projects"),
        ("DELETE", "/v1/projects/p2"),
        ("POST", "/v1/images/build"),
        ("POST", "/v1/images/import"),
        ("DELETE", "/v1/images/debian-12"),
    ],
)
async def test_admin_only_paths_are_a_403_for_a_project(
    app: FastAPI, daemon: Daemon, method: str, path: str
) -> None:
    tokens = projects_and_vms(daemon)
    async with client(app, tokens["p1"]) as member:
        answer = await member.request(method, path, json={"name": "x"})
    assert error_of(answer) == (
        403, "forbidden", f"A project token cannot {method} {path}; that is for the host's admin."
    )  # fmt: skip
    assert sorted(p.name for p in daemon.services.projects.list()) == ["p1", "p2"]


async def test_a_project_may_read_images_and_make_vms_only_in_itself(
    app: FastAPI, daemon: Daemon
) -> None:
    tokens = projects_and_vms(daemon)
    async with client(app, tokens["p1"]) as member:
        assert (await member.get("/v1/images")).json() == []
        elsewhere = await member.post("/v1/vms", json={"name": "x", "project": "p2"})
    assert error_of(elsewhere) == (
        403, "forbidden", "A token of project p1 cannot make VMs in project p2."
    )  # fmt: skip


@pytest.mark.parametrize("header", ["Bearer bgw_not-a-token", "bgw_not-a-token", "Bearer "])
async def test_a_bad_token_is_a_401(app: FastAPI, daemon: Daemon, header: str) -> None:
    projects_and_vms(daemon)
    async with client(app) as api:
        answer = await api.get("/v1/vms", headers={"Authorization": header})
    assert error_of(answer) == (
        401, "unauthorized",
        "The API token is not valid; ask the host's admin for your project's token.",
    )  # fmt: skip


async def test_a_project_sees_its_own_events_and_costs_even_of_removed_vms(
    app: FastAPI, daemon: Daemon, clock: SetClock
) -> None:
    tokens = projects_and_vms(daemon)
    events = daemon.store.events
    events.add("mine", "created", "created")
    events.add("theirs", "created", "created")
    events.add(None, "project-created", "project p3 created", subject="p3")
    clock.at += 3600
    daemon.store.vms.delete(daemon.store.vms.get("mine").id)
    events.add("mine", "removed", "removed")  # written after its row went: still p1's
    async with client(app, tokens["p1"]) as member:
        seen = (await member.get("/v1/events")).json()
        sprawl = (await member.get("/v1/sprawl")).json()
        costs = (await member.get("/v1/costs")).json()
    assert [(e["vm"], e["kind"], e["project"]) for e in seen] == [
        ("mine", "created", "p1"), ("mine", "removed", "p1"),
    ]  # fmt: skip
    assert sprawl == []
    assert [row["group"] for row in costs["rows"]] == ["mine"]


async def test_what_a_project_does_is_recorded_as_done_by_it(app: FastAPI, daemon: Daemon) -> None:
    tokens = projects_and_vms(daemon)
    put(daemon.store, vm("parked", project="p1"))  # never started: removing it needs no QEMU
    daemon.store.events.add("parked", "created", "created")  # as the VM service records it
    async with client(app, tokens["p1"]) as member:
        assert (await member.delete("/v1/vms/parked")).status_code == 204
        seen = [e for e in (await member.get("/v1/events")).json() if e["vm"] == "parked"]
    assert [(e["kind"], e["actor"]) for e in seen] == [
        ("created", "daemon"), ("removed", "project p1"),
    ]  # fmt: skip
    assert daemon.store.vms.find("parked") is None


class _Websocket:
    """One websocket connection played against the app by hand (httpx speaks no websocket)."""

    def __init__(self, first: str | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.connected = False
        self.first = first

    async def receive(self) -> dict[str, Any]:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        if self.first is not None:
            text, self.first = self.first, None
            return {"type": "websocket.receive", "text": text}
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(dict(message))


async def _websocket(
    app: FastAPI, path: str, token: str, first: str | None = None
) -> list[dict[str, Any]]:
    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": path,
        "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"authorization", f"Bearer {token}".encode())], "subprotocols": [],
        "client": ("127.0.0.1", 1), "server": ("bungalowd", 80),
    }  # fmt: skip
    socket = _Websocket(first)
    await app(scope, socket.receive, socket.send)
    return socket.sent


@pytest.mark.parametrize(
    ("token", "path", "code", "close"),
    [
        ("bgw_not-a-token", "/v1/vms/mine/exec/ws", "unauthorized", 4401),
        ("p1", "/v1/vms/theirs/exec/ws", "vm_not_found", 4404),
        ("p1", "/v1/vms/admins/console", "vm_not_found", 4404),
    ],
)
async def test_a_refused_websocket_gets_the_error_then_a_close_code(
    app: FastAPI, daemon: Daemon, token: str, path: str, code: str, close: int
) -> None:
    tokens = projects_and_vms(daemon)
    sent = await _websocket(app, path, tokens.get(token, token))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    frame = json.loads(sent[1]["text"])
    assert (frame["type"], frame["code"]) == ("error", code)
    assert frame["message"].endswith(".")
    assert sent[2]["code"] == close


async def test_an_exec_request_the_schema_refuses_on_a_websocket_is_one_sentence(
    app: FastAPI, daemon: Daemon
) -> None:
    tokens = projects_and_vms(daemon)
    first = json.dumps({"argv": ["ls"], "rows": True})
    sent = await _websocket(app, "/v1/vms/mine/exec/ws", tokens["p1"], first)
    frame = json.loads(sent[1]["text"])
    assert (frame["code"], sent[2]["code"]) == ("invalid_request", 4400)
    assert frame["message"] == (
        "The request's rows true is not valid: give a whole number from 1 to 65535; "
        "see GET /openapi.json."
    )
