"""The routes in process: status codes, the error shape, and what each answers, on rows a
test writes into the daemon's store. No VM boots; see conftest.py."""

from __future__ import annotations

from typing import Any

import httpx
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
        ("/v1/vms", {"name": "Bad_Name!"}, 'name "Bad_Name!" is not valid: give a VM name'),
        ("/v1/projects", {"name": "Team A"}, 'name "Team A" is not valid: give a project name'),
        ("/v1/vms", {"name": "web\n"}, 'name "web\\n" is not valid: give a VM name'),
    ],
)
async def test_an_invalid_name_is_a_400_naming_the_rule(
    app: FastAPI, daemon: Daemon, path: str, body: dict[str, Any], what: str
) -> None:
    async with client(app) as api:
        status, code, message = error_of(await api.post(path, json=body))
    assert (status, code) == (400, "invalid_name")
    assert message.startswith(f"The request's {what}: 1 to 63 lower-case letters, digits and "
                              "hyphens, starting and ending with a letter or digit")  # fmt: skip
    assert daemon.store.vms.list() == [] and daemon.store.projects.list() == []


#: A body the schema refuses, and the sentence: the field, the value given, what is allowed.
REFUSED = [
    ("/v1/vms", {"name": 5}, 'The request\'s name 5 is not valid: give a VM name: 1 to 63'),
    ("/v1/vms", {}, "The request has no name, which is required"),
    ("/v1/vms", {"name": "ok", "cpus": "lots"},
     'The request\'s cpus "lots" is not valid: give a whole number from 1 to 255'),
    ("/v1/vms", {"name": "ok", "cpus": True},
     "The request's cpus true is not valid: give a whole number from 1 to 255"),
    ("/v1/vms", {"name": "ok", "cpus": 1000},
     "The request's cpus 1000 is not valid: give a whole number from 1 to 255"),
    ("/v1/vms", {"name": "ok", "cpu": 2}, "The request's cpu is not a field this call takes"),
    ("/v1/vms", {"name": "ok", "memory": "64M"},
     'The request\'s memory "64M" is not valid: give a size from 128M to 1024T: bytes, or text '
     "such as 512M or 8G"),
    ("/v1/vms", {"name": "ok", "memory": "9999999T"},
     'The request\'s memory "9999999T" is not valid: give a size from 128M to 1024T'),
    ("/v1/vms", {"name": "ok", "ttl": "-2h"},
     'The request\'s ttl "-2h" is not valid: give a duration above 0 and at most 100 years: '
     "seconds, or text such as 90s, 10m or 2h"),
    ("/v1/vms", {"name": "ok", "ttl": 0}, "The request's ttl 0 is not valid: give a duration"),
    ("/v1/vms", {"name": "ok", "on_idle": "vanish"},
     'The request\'s on_idle "vanish" is not valid: give one of stop, suspend, '
     "snapshot-and-delete, delete, none"),
    ("/v1/vms", {"name": "ok", "accel": "hvf"},
     'The request\'s accel "hvf" is not valid: give one of auto, kvm, tcg'),
    ("/v1/vms", {"name": "ok", "labels": {"Team": "a"}},
     'The request\'s labels key "Team" is not valid: give 1 to 63 lower-case letters'),
    ("/v1/vms", {"name": "ok", "labels": {"team": "a b"}},
     'The request\'s labels.team "a b" is not valid: give up to 63 letters'),
    ("/v1/vms", {"name": "ok", "ports": ["8080:99999"]},
     'The request\'s ports[0] "8080:99999" is not valid: give a port forward'),
    ("/v1/vms", {"name": "ok", "disk_iops": False},
     "The request's disk_iops false is not valid: give a whole number of operations"),
    ("/v1/vms", "not json", "The request's body is not JSON"),
    ("/v1/vms", [1, 2], "The request's body [1, 2] is not valid: give a JSON object"),
    ("/v1/sandboxes", {"disk": False},
     "The request's disk false is not valid: give a size from 1M to 1024T"),
    ("/v1/sandboxes", {"timeout": 1e300},
     "The request's timeout 1e+300 is not valid: give a duration above 0 and at most 100 years"),
    ("/v1/sandboxes", {"warm": 1}, "The request's warm 1 is not valid: give true or false"),
    ("/v1/projects", {"name": "p", "max_vms": [1]},
     "The request's max_vms [1] is not valid: give a whole number from 0 to 1000000"),
    ("/v1/vms/plain/lease", {"timeout": {"h": 1}},
     'The request\'s timeout {"h": 1} is not valid: give a duration'),
    ("/v1/vms/plain/lease/renew", {"duration": 1.9e295},
     "The request's duration 1.9e+295 is not valid: give a duration above 0 and at most 100 years"),
    ("/v1/vms/plain/fork", {"count": 10**30},
     "The request's count 1000000000000000000000000000000 is not valid: give a whole number from "
     "1 to 64"),
    ("/v1/vms/plain/stop", {"timeout": -1},
     "The request's timeout -1 is not valid: give a number of seconds from 0 to 3600"),
    ("/v1/vms/plain/exec", {"argv": ["ls"], "env": {"A=B": "1"}},
     'The request\'s env key "A=B" is not valid: give an environment variable\'s name'),
    ("/v1/vms/plain/exec", {"argv": ["ls"], "stdin": "not base64!"},
     'The request\'s stdin "not base64!" is not valid: give bytes in base64'),
    ("/v1/vms/plain/fork", {"count": 2.5},
     "The request's count 2.5 is not valid: give a whole number from 1 to 64"),
    ("/v1/vms/plain/lease", {"timeout": "0.0h"},
     'The request\'s timeout "0.0h" is not valid: give a duration above 0'),
    ("/v1/vms", {"name": "ok", "memory": "9" * 400 + "G"},
     'The request\'s memory "9999'),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "says"), REFUSED)
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
    named = says.startswith(("The request's name", "The request's labels"))
    assert (status, code) == (400, "invalid_name" if named else "invalid_request")
    assert message.startswith(says) and message.endswith("; see GET /openapi.json."), message
    assert [record.name for record in daemon.store.vms.list()] == ["plain"]


async def test_a_bad_query_parameter_is_a_400_too(app: FastAPI, daemon: Daemon) -> None:
    put(daemon.store, vm("plain"), VmState.RUNNING)
    async with client(app) as api:
        status, code, message = error_of(await api.get("/v1/events", params={"limit": "lots"}))
        empty = await api.put("/v1/vms/plain/files", params={"path": ""}, content=b"x")
        mode = await api.put("/v1/vms/plain/files", params={"path": "/f", "mode": 99999})
        none = await api.get("/v1/events", params={"limit": 0})
        many = await api.get("/v1/events", params={"limit": 10001})
    assert error_of(none)[::2] == (
        400, 'The request\'s query parameter limit "0" is not valid: give 1 or more; see GET '
        "/openapi.json.",
    )  # fmt: skip
    assert error_of(many)[0] == 400
    assert (status, code) == (400, "invalid_request")
    assert message.startswith('The request\'s query parameter limit "lots" is not valid: give a '
                              "whole number")  # fmt: skip
    assert error_of(empty)[2].startswith(
        'The request\'s query parameter path "" is not valid: give a path in the VM'
    )
    assert error_of(mode)[::2] == (
        400, 'The request\'s query parameter mode "99999" is not valid: give 4095 or less; '
        "see GET /openapi.json.",
    )  # fmt: skip


async def test_a_whole_number_may_be_written_as_json_s_3_0(app: FastAPI) -> None:
    async with client(app) as api:
        made = await api.post("/v1/projects", json={"name": "p", "max_vms": 3.0, "max_vcpus": 8})
    assert made.status_code == 201, made.text
    assert made.json()["quota"]["vms"] == 3 and made.json()["quota"]["vcpus"] == 8


@pytest.mark.parametrize(
    ("method", "path", "status", "says"),
    [
        (
            "GET",
            "/v1/nothing",
            404,
            "bungalowd has no GET /v1/nothing; GET /openapi.json lists what it has",
        ),
        ("PUT", "/v1/vms", 405, "/v1/vms does not take PUT; GET /openapi.json says what it takes"),
    ],
)
async def test_a_route_or_method_the_api_lacks_is_refused_with_a_sentence(
    app: FastAPI, method: str, path: str, status: int, says: str
) -> None:
    async with client(app) as api:
        answer = await api.request(method, path)
    assert error_of(answer)[::2] == (status, says + ".")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "ok", "ttl": "0s"}, 'The request\'s ttl "0s" is not valid: give a duration'),
        ({"name": "ok", "on_expiry": "delete"}, "--on-expiry needs a lease"),
        ({"name": "ok", "memory": "lots"}, 'The request\'s memory "lots" is not valid'),
        ({"name": "ok", "cpu_weight": 0}, "The request's cpu_weight 0 is not valid"),
        ({"name": "ok", "net_bw": "1K"}, "A network bandwidth limit must be at least 16K"),
        ({"name": "ok", "disk_iops_burst": 10}, "A disk IOPS burst needs a IOPS limit"),
        ({"name": "ok", "iso": "/usr/lib/grub-rescue/grub-rescue-cdrom.iso", "disk": "1G",
          "image": "debian-12"}, "give --iso or --image, not both"),
    ],
)  # fmt: skip
async def test_a_launch_is_checked_before_anything_is_made(
    app: FastAPI, daemon: Daemon, body: dict[str, Any], says: str
) -> None:
    async with client(app) as api:
        status, _, message = error_of(await api.post("/v1/vms", json=body))
    assert status == 400 and says in message
    assert daemon.store.vms.list() == []
    assert list(daemon.data.vms.iterdir()) == []
    assert daemon.vms.images.list() == []  # no ISO imported either


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
    assert error_of(bad)[2].startswith('The request\'s cpu "lots" is not valid: give a share of')


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


async def test_a_full_host_disk_is_a_409_sentence_not_a_500(app: FastAPI) -> None:
    """Whatever route meets a full disk (a snapshot's copy, an image's conversion...) answers
    the host's state, not a fault of bungalow's. The route below stands for any of them."""
    import errno

    async def copying() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/snapshots/s1/memory")

    app.add_api_route("/v1/test-only/full", copying)
    # Starlette answers with the handler's response, then raises the error again for the
    # server to log; a server keeps the answer, and so does this transport.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://bungalowd") as api:
        status, code, message = error_of(await api.get("/v1/test-only/full"))
    assert (status, code) == (409, "capacity")
    assert message.startswith(
        "The host's disk is full (No space left on device writing /data/snapshots/s1/memory); "
        "free space on it"
    )
