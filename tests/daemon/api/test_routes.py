"""The routes in process: status codes, the error shape, and what each answers, on rows a
test writes into the daemon's store. No VM boots; see conftest.py."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from bungalow import __version__
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from tests.daemon.api.conftest import client, error_of
from tests.daemon.records import GIB, T0, SetClock, put, vm

DAY = 86400.0


async def test_health_carries_the_version(app: FastAPI) -> None:
    async with client(app) as api:
        health = (await api.get("/v1/health")).json()
    assert health["ok"] is True and health["version"] == __version__


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/vms/ghost"),
        ("DELETE", "/v1/vms/ghost"),
        ("POST", "/v1/vms/ghost/start"),
        ("POST", "/v1/vms/ghost/stop"),
        ("POST", "/v1/vms/ghost/lease/renew"),
        ("PATCH", "/v1/vms/ghost/idle"),
        ("GET", "/v1/vms/ghost/snapshots"),
        ("GET", "/v1/vms/ghost/metrics"),
        ("GET", "/v1/vms/ghost/logs"),
    ],
)
async def test_a_vm_that_does_not_exist_is_a_404_with_a_sentence(
    app: FastAPI, method: str, path: str
) -> None:
    body = {"duration": "1h"} if path.endswith("renew") else {}
    async with client(app) as api:
        answer = await api.request(method, path, json=body)
    assert error_of(answer) == (
        404, "vm_not_found", "There is no VM named ghost; `bungalow ls` lists the VMs that exist."
    )  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "what"),
    [
        ("/v1/vms", {"name": "Bad_Name!"}, "The VM name 'Bad_Name!' is not valid"),
        ("/v1/projects", {"name": "Team A"}, "The project name 'Team A' is not valid"),
    ],
)
async def test_an_invalid_name_is_a_400_naming_the_rule(
    app: FastAPI, daemon: Daemon, path: str, body: dict[str, Any], what: str
) -> None:
    async with client(app) as api:
        status, code, message = error_of(await api.post(path, json=body))
    assert (status, code) == (400, "invalid_name")
    assert message.startswith(what) and "lower-case letters, digits and hyphens" in message
    assert daemon.store.vms.list() == [] and daemon.store.projects.list() == []


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/v1/vms", {"name": 5}, "The request's name is wrong: Input should be a valid string"),
        ("/v1/vms", {}, "The request's name is wrong: Field required"),
        ("/v1/vms", {"name": "ok", "cpus": "lots"}, "The request's cpus is wrong"),
        ("/v1/vms", "not json", "The request's body is wrong"),
        ("/v1/projects", {"name": "p", "max_vms": [1]}, "The request's max_vms is wrong"),
        ("/v1/vms/plain/lease", {"timeout": {"h": 1}}, "The request's timeout"),
    ],
)
async def test_a_body_the_schema_refuses_is_a_400_sentence_not_a_422(
    app: FastAPI, daemon: Daemon, path: str, body: Any, says: str
) -> None:
    put(daemon.store, vm("plain"))
    async with client(app) as api:
        if isinstance(body, str):
            answer = await api.post(path, content=body)
        else:
            answer = await api.post(path, json=body)
    status, code, message = error_of(answer)
    assert (status, code) == (400, "invalid_request")
    assert message.startswith(says) and message.endswith("; see GET /openapi.json.")


async def test_a_bad_query_parameter_is_a_400_too(app: FastAPI) -> None:
    async with client(app) as api:
        status, code, message = error_of(await api.get("/v1/events", params={"limit": "lots"}))
    assert (status, code) == (400, "invalid_request")
    assert message.startswith("The request's query.limit is wrong")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "ok", "ttl": "-2h"}, "The lease (--ttl) '-2h' is not a duration"),
        ({"name": "ok", "ttl": "0s"}, "must be positive"),
        ({"name": "ok", "on_expiry": "delete"}, "--on-expiry needs a lease"),
        ({"name": "ok", "on_idle": "vanish"}, "The idle action 'vanish' is unknown"),
        ({"name": "ok", "memory": "lots"}, "'lots' is not a size"),
        ({"name": "ok", "labels": {"Team": "a"}}, "label key 'Team' is not valid"),
    ],
)
async def test_a_launch_is_checked_before_anything_is_made(
    app: FastAPI, daemon: Daemon, body: dict[str, Any], says: str
) -> None:
    async with client(app) as api:
        _, _, message = error_of(await api.post("/v1/vms", json=body))
    assert says in message
    assert daemon.store.vms.list() == []
    assert list(daemon.data.vms.iterdir()) == []


async def test_a_lease_is_set_renewed_and_dropped(
    app: FastAPI, daemon: Daemon, clock: SetClock
) -> None:
    put(daemon.store, vm("plain"), VmState.STOPPED)
    async with client(app) as api:
        refused = await api.post("/v1/vms/plain/lease/renew", json={"duration": "1h"})
        assert error_of(refused)[:2] == (400, "invalid_request")
        assert "has no lease to renew" in error_of(refused)[2]
        leased = (await api.post("/v1/vms/plain/lease", json={"timeout": "1h"})).json()
        assert (leased["expires_at"], leased["expires_in"], leased["on_expiry"]) == (
            T0 + 3600, 3600, "stop",
        )  # fmt: skip
        clock.at += 600
        renewed = await api.post("/v1/vms/plain/lease/renew", json={"duration": "2h"})
        assert renewed.json()["expires_at"] == T0 + 600 + 7200
        dropped = await api.post("/v1/vms/plain/lease", json={"timeout": None})
        assert dropped.json()["expires_at"] is None
        unknown = await api.post("/v1/vms/plain/lease", json={"timeout": "1h", "on_expiry": "x"})
        assert error_of(unknown)[0] == 400


async def test_an_idle_policy_is_merged_and_shown(app: FastAPI, daemon: Daemon) -> None:
    put(daemon.store, vm("plain"))
    async with client(app) as api:
        first = await api.patch("/v1/vms/plain/idle", json={"after": "30m", "cpu": "50%"})
        second = await api.patch("/v1/vms/plain/idle", json={"action": "stop"})
        bad = await api.patch("/v1/vms/plain/idle", json={"cpu": "lots"})
    assert first.json()["idle"] == {"after": 1800.0, "cpu": 0.5}
    assert second.json()["idle"] == {"after": 1800.0, "cpu": 0.5, "action": "stop"}
    assert "'lots' is not a CPU share" in error_of(bad)[2]


async def test_projects_are_made_listed_changed_and_removed(app: FastAPI, daemon: Daemon) -> None:
    async with client(app) as api:
        asked = {"name": "p1", "max_vcpus": 4, "max_memory": "8G", "idle_after": "2h"}
        made = await api.post("/v1/projects", json=asked)
        assert made.status_code == 201
        token = made.json()["token"]
        assert token.startswith("bgw_")
        assert made.json()["quota"] == {"vcpus": 4, "memory": 8 * GIB, "disk": None, "vms": None}
        assert made.json()["idle"] == {"after": 7200.0}
        again = await api.post("/v1/projects", json={"name": "p1"})
        assert error_of(again)[:2] == (409, "conflict")

        put(daemon.store, vm("a", project="p1", cpus=2, memory=GIB), VmState.RUNNING)
        put(daemon.store, vm("b", project="p1", cpus=1, disk_size=GIB), VmState.STOPPED)
        (listed,) = (await api.get("/v1/projects")).json()
        assert listed["token"] is None  # shown once, when it was made
        assert listed["used"] == {"vcpus": 2, "memory": GIB, "disk": 11 * GIB, "vms": 2}

        more = {"max_vms": 5, "on_idle": "delete", "idle_cpu": "2%"}
        changed = await api.patch("/v1/projects/p1", json=more)
        assert changed.json()["quota"]["vms"] == 5 and changed.json()["quota"]["vcpus"] == 4
        assert changed.json()["idle"] == {"after": 7200.0, "action": "delete", "cpu": 0.02}
        missing = await api.patch("/v1/projects/nope", json={"max_vms": 1})
        assert error_of(missing)[:2] == (404, "not_found")

        busy = await api.delete("/v1/projects/p1")
        assert error_of(busy)[:2] == (409, "conflict") and "(a, b)" in error_of(busy)[2]
        gone = await api.delete("/v1/projects/p1", params={"orphan_vms": "true"})
        assert gone.status_code == 204 and gone.content == b""
        assert (await api.get("/v1/projects")).json() == []
    async with client(app, token) as member:
        assert error_of(await member.get("/v1/vms"))[:2] == (401, "unauthorized")


async def test_costs_are_grouped_and_a_bad_grouping_is_a_400(
    app: FastAPI, daemon: Daemon, clock: SetClock
) -> None:
    web = put(daemon.store, vm("web", vm_id="v1", cpus=2, owner="alice"), VmState.RUNNING)
    put(daemon.store, vm("db", vm_id="v2", cpus=1, owner="bob"), VmState.RUNNING)
    clock.at = T0 + 3600
    daemon.store.vms.delete(web.id)
    clock.at = T0 + 7200
    async with client(app) as api:
        by_vm = (await api.get("/v1/costs")).json()
        by_owner = (await api.get("/v1/costs", params={"by": "owner", "since": "1h"})).json()
        bad = await api.get("/v1/costs", params={"by": "cpu"})
    rows = {row["group"]: row for row in by_vm["rows"]}
    assert rows["web"]["removed"] is True and rows["db"]["removed"] is False
    assert (rows["web"]["running_hours"], rows["db"]["running_hours"]) == (1.0, 2.0)
    assert by_vm["total"]["total"] == pytest.approx(rows["web"]["total"] + rows["db"]["total"])
    assert (by_vm["since"], by_vm["until"], by_vm["currency"]) == (T0, T0 + 7200, "USD")
    assert [row["group"] for row in by_owner["rows"]] == ["bob"]  # the last hour: db's only
    assert error_of(bad)[:2] == (400, "invalid_request")


async def test_events_since_a_duration_a_date_or_for_one_vm(
    app: FastAPI, daemon: Daemon, clock: SetClock
) -> None:
    events = daemon.store.events
    clock.at = T0 - 8 * DAY
    events.add("web", "created", "created")
    clock.at = T0 - 6 * DAY
    events.add("web", "stopped", "stopped")
    events.add("db", "created", "created")
    clock.at = T0
    async with client(app) as api:
        week = (await api.get("/v1/events", params={"since": "1w"})).json()
        ever = (await api.get("/v1/events", params={"since": "2020-01-01"})).json()
        web = (await api.get("/v1/events", params={"vm": "web", "limit": 1})).json()
        bad = await api.get("/v1/events", params={"since": "last tuesday"})
    assert [(e["vm"], e["kind"]) for e in week] == [("web", "stopped"), ("db", "created")]
    assert len(ever) == 3 and {"actor", "reason", "kind", "message", "time"} <= set(ever[0])
    assert [e["kind"] for e in web] == ["stopped"]  # the newest one
    assert "neither a date nor a duration" in error_of(bad)[2]


async def test_sprawl_lists_what_a_test_wrote_and_applies_nothing_it_should_not(
    app: FastAPI, daemon: Daemon, clock: SetClock
) -> None:
    put(daemon.store, vm("old", created=T0), VmState.STOPPED)
    put(daemon.store, vm("new", created=T0), VmState.STOPPED)
    clock.at = T0 + 8 * DAY
    daemon.store.events.add("new", "stopped", "stopped")
    async with client(app) as api:
        (finding,) = (await api.get("/v1/sprawl")).json()
    assert (finding["vm"], finding["kind"], finding["action"]) == (
        "old", "long-stopped", "snapshot-and-delete",
    )  # fmt: skip
    assert finding["why"] == "stopped for 8d, holding its disk" and not finding["automatic"]
    assert finding["cost_per_hour"] == pytest.approx(10 * 0.08 / 730)  # its disk only


async def test_nothing_deleted_to_restore(app: FastAPI) -> None:
    async with client(app) as api:
        assert (await api.get("/v1/deleted")).json() == []
        missing = await api.post("/v1/deleted/ghost/restore")
    assert error_of(missing)[:2] == (404, "not_found")


def _expired_and_parked(daemon: Daemon) -> None:
    """A stopped VM whose lease ended: --apply stops it, which is nothing to do (no QEMU)."""
    put(daemon.store, vm("old", expires_at=T0 - 60, on_expiry="stop"), VmState.STOPPED)


async def test_sprawl_apply_answers_one_result_per_vm(app: FastAPI, daemon: Daemon) -> None:
    _expired_and_parked(daemon)
    async with client(app) as api:
        (result,) = (await api.post("/v1/sprawl/apply")).json()
    assert (result["vm"], result["action"], result["result"]) == (
        "old", "stop", "nothing to stop: it is stopped",
    )  # fmt: skip
    (event,) = daemon.store.events.query(vm="old", kinds=("sprawl",))
    assert event["actor"] == "sprawl --apply" and event["reason"].startswith("lease-expired: ")


async def test_a_successful_apply_result_carries_no_error(app: FastAPI, daemon: Daemon) -> None:
    _expired_and_parked(daemon)
    async with client(app) as api:
        (result,) = (await api.post("/v1/sprawl/apply")).json()
    assert "error" not in result
