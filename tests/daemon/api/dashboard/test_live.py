"""The live updates' hub (api/dashboard/live.py) in process: each listener gets its scope's
VM list first, then only what changed and what it may see, tick by tick."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from bungalow.daemon.api.dashboard.live import LiveHub
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.telemetry.metrics import Sample
from bungalow.daemon.telemetry.ticks import SampleTicks
from tests.daemon.api.conftest import projects_and_vms
from tests.daemon.records import put, vm


async def _next(stream: AsyncIterator[str]) -> tuple[str, Any]:
    """The next event of a stream: its name and its data."""
    message = await anext(stream)
    name, data = message.removesuffix("\n\n").split("\n")
    return name.removeprefix("event: "), json.loads(data.removeprefix("data: "))


async def test_each_listener_sees_its_scope_and_only_what_changed(daemon: Daemon) -> None:
    projects_and_vms(daemon)
    services = daemon.services
    hub = LiveHub(services, SampleTicks(), services.sessions)
    admins = [hub.stream(services.sessions.open(None)) for _ in range(3)]
    members = [hub.stream(services.sessions.open("p1")) for _ in range(2)]
    for stream in admins:
        kind, vms = await _next(stream)
        assert kind == "vms" and sorted(v["name"] for v in vms) == ["admins", "mine", "theirs"]
    for stream in members:
        assert await _next(stream) == ("vms", [services.views.vm(services.vms.get("mine"))
                                               .model_dump(mode="json")])  # fmt: skip
    hub.tick()  # nothing changed: nothing is sent
    services.events.add("admins", "note", "the admin's VM")
    services.events.add("mine", "note", "p1's VM")
    history = services.metrics.history
    history["mine"] = deque([Sample(time=100.0, cpu_time=7)])
    hub.tick()
    for stream in admins:
        assert [(await _next(stream))[1]["message"] for _ in range(2)] == [
            "the admin's VM", "p1's VM"
        ]  # fmt: skip
        kind, sample = await _next(stream)
        assert kind == "metrics" and sample["vm"] == "mine" and sample["cpu.time"] == 7
    for stream in members:  # the admin's VM's event is not theirs to see
        kind, event = await _next(stream)
        assert (kind, event["vm"], event["message"]) == ("event", "mine", "p1's VM")
        assert (await _next(stream))[0] == "metrics"
    put(daemon.store, vm("more", project="p1"), VmState.STOPPED)
    hub.tick()  # a new VM of p1: both scopes' lists changed; the sample did not
    for stream in [*admins, *members]:
        kind, vms = await _next(stream)
        assert kind == "vms" and "more" in [v["name"] for v in vms]
    for stream in [*admins, *members]:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_a_stream_ends_with_its_session(daemon: Daemon) -> None:
    services = daemon.services
    hub = LiveHub(services, SampleTicks(), services.sessions)
    session = services.sessions.open(None)
    stream = hub.stream(session)
    assert (await _next(stream))[0] == "vms"
    services.sessions.close(session.id)
    services.events.add(None, "note", "after the logout")
    hub.tick()
    assert [message async for message in stream] == []
