"""The live updates' hub (api/dashboard/live.py) in process: each listener gets its scope's
VM list first, then only what changed and what it may see, tick by tick."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from bungalow.daemon.api.dashboard.live import REFRESH_SECONDS, LiveHub
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.telemetry.metrics import Sample
from bungalow.daemon.telemetry.ticks import SampleTicks
from tests.daemon.api.conftest import projects_and_vms
from tests.daemon.records import SetClock, put, vm


class Events:
    """A stream's events one by one: a tick's events come to a listener as one message."""

    def __init__(self, stream: AsyncIterator[str]) -> None:
        self.stream = stream
        self.pending: deque[tuple[str, Any]] = deque()

    async def next(self) -> tuple[str, Any]:
        """The next event: its name and its data."""
        while not self.pending:
            message = await anext(self.stream)
            for block in message.removesuffix("\n\n").split("\n\n"):
                name, data = block.split("\n")
                self.pending.append(
                    (name.removeprefix("event: "), json.loads(data.removeprefix("data: ")))
                )
        return self.pending.popleft()


async def _next(events: Events) -> tuple[str, Any]:
    return await events.next()


async def test_each_listener_sees_its_scope_and_only_what_changed(daemon: Daemon) -> None:
    projects_and_vms(daemon)
    services = daemon.services
    hub = LiveHub(services, SampleTicks(), services.sessions)
    admins = [Events(hub.stream(services.sessions.open(None))) for _ in range(3)]
    members = [Events(hub.stream(services.sessions.open("p1"))) for _ in range(2)]
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
    for events in [*admins, *members]:
        await events.stream.aclose()  # type: ignore[attr-defined]


async def test_a_stream_ends_with_its_session(daemon: Daemon) -> None:
    services = daemon.services
    hub = LiveHub(services, SampleTicks(), services.sessions)
    session = services.sessions.open(None)
    stream = hub.stream(session)
    assert (await _next(Events(stream)))[0] == "vms"
    services.sessions.close(session.id)
    services.events.add(None, "note", "after the logout")
    hub.tick()
    assert [message async for message in stream] == []


async def test_a_list_that_drifts_is_sent_again_only_after_the_refresh(
    daemon: Daemon, clock: SetClock
) -> None:
    """A running VM's cost and quiet time change with the clock alone: the list is built
    again when a record changes, else once REFRESH_SECONDS have passed."""
    services = daemon.services
    put(daemon.store, vm("web", created=clock.at, started=clock.at), VmState.RUNNING)
    hub = LiveHub(services, SampleTicks(), services.sessions)
    events = Events(hub.stream(services.sessions.open(None)))
    assert (await events.next())[1][0]["quiet_for"] == 0
    hub.tick()  # builds the list once: the hub's first tick
    clock.at += REFRESH_SECONDS / 2
    services.events.add(None, "note", "a tick with something to send")
    hub.tick()  # only the clock moved: the list is not built again
    assert (await events.next())[0] == "event"
    clock.at += REFRESH_SECONDS / 2
    hub.tick()
    kind, vms = await events.next()
    assert kind == "vms" and vms[0]["quiet_for"] == REFRESH_SECONDS
    await events.stream.aclose()  # type: ignore[attr-defined]
