"""``GET /v1/vms`` with the filters of ``ls --project/--state/--label``, and a console log
followed (``logs -f``), in process on rows a test writes; no VM boots (conftest.py)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from bungalow import __version__
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from bungalow.qemu.argv import RunFiles
from tests.daemon.api.conftest import client, error_of
from tests.daemon.records import put, vm


def _rows(daemon: Daemon) -> None:
    put(daemon.store, vm("web", project="p1", labels={"team": "x", "ci": "1"}), VmState.RUNNING)
    put(daemon.store, vm("db", project="p1", labels={"team": "y"}), VmState.STOPPED)
    put(daemon.store, vm("mine", labels={"team": "x"}), VmState.PAUSED)


async def test_every_filter_given_narrows_the_listing(app: FastAPI, daemon: Daemon) -> None:
    _rows(daemon)
    asked = {
        "": ["db", "mine", "web"],
        "?project=p1": ["db", "web"],
        "?state=running&state=paused": ["mine", "web"],
        "?label=team=x": ["mine", "web"],
        "?label=team": ["db", "mine", "web"],
        "?label=team=x&label=ci": ["web"],
        "?project=p1&state=stopped&label=team=y": ["db"],
        "?project=p2": [],
    }
    async with client(app) as api:
        for query, names in asked.items():
            answer = await api.get(f"/v1/vms{query}")
            assert answer.status_code == 200, answer.text
            assert sorted(v["name"] for v in answer.json()) == names, query


async def test_a_state_that_does_not_exist_is_a_400_listing_the_states(app: FastAPI) -> None:
    async with client(app) as api:
        status, code, message = error_of(await api.get("/v1/vms?state=runing"))
    assert (status, code) == (400, "invalid_request")
    assert message.startswith(
        'The request\'s query parameter state[0] "runing" is not valid: give one of '
        "'created', 'starting', 'running'"
    )


async def test_host_info_names_the_daemons_version(app: FastAPI) -> None:
    async with client(app) as api:
        assert (await api.get("/v1/host")).json()["version"] == __version__


async def test_a_followed_log_gives_all_output_and_ends_when_qemu_does(
    app: FastAPI, daemon: Daemon
) -> None:
    web = put(daemon.store, vm("web"), VmState.RUNNING)
    log = RunFiles(daemon.vms.run_dir(web)).console_log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"one\ntwo\nthree\n")

    async def the_vm_writes_then_stops() -> None:
        with log.open("ab") as console:
            console.write(b"login: ")
        daemon.store.vms.set_state(web.id, VmState.STOPPED)

    async with client(app) as api:
        # ASGITransport returns once the stream has ended: it must end, with every byte.
        followed, _ = await asyncio.gather(
            api.get("/v1/vms/web/logs", params={"follow": "true"}),
            the_vm_writes_then_stops(),
        )
    assert followed.status_code == 200
    assert followed.content == b"one\ntwo\nthree\nlogin: "


async def test_a_followed_log_of_a_stopped_vm_is_its_log(app: FastAPI, daemon: Daemon) -> None:
    web = put(daemon.store, vm("web"), VmState.STOPPED)
    log = RunFiles(daemon.vms.run_dir(web)).console_log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"Debian GNU/Linux 12\nreboot: Power down\n")
    async with client(app) as api:
        followed = await api.get("/v1/vms/web/logs", params={"follow": "true", "tail": 1})
        missing = await api.get("/v1/vms/ghost/logs", params={"follow": "true"})
    assert followed.content == b"reboot: Power down\n"
    assert error_of(missing)[:2] == (404, "vm_not_found")
