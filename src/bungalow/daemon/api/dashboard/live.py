"""``GET /live``: the dashboard's live updates as server-sent events.

Events, each ``event: NAME`` and one line of JSON ``data``:

- ``vms``: the list ``GET /v1/vms`` answers to the session, at once and then after
  each metrics sample, when it changed;
- ``event``: one audit event as ``GET /v1/events`` answers it, as it is recorded;
- ``metrics``: ``{"vm": NAME, "time": ..., "cpu.time": ..., "noisy_for": [...],
  "throttled": [...]}``, one sample as ``GET /v1/vms/NAME/metrics`` answers it, once per
  sample, with the VM's NOISY and held markers as ``GET /v1/metrics`` gives them (so
  that the VM list need not fetch those after every sample);

and a ``: ping`` comment every :data:`PING_SECONDS`. Nothing is polled faster than
the metrics are sampled (telemetry/metrics.py ``INTERVAL``): one :class:`LiveHub` wakes
after each sample (telemetry/ticks.py) while anyone listens, and computes each
scope's VM list (the admin's, or one project's) once for all its listeners.

What an open dashboard costs bungalowd (bench/dashboard.py, 50 VMs, 5 dashboards):
building 50 VMs' views after every sample (SQLite reads and a stat each) and one
write per VM per listener were about 45% more daemon CPU than none open. So the list
is built again only when a VM's record changed, or :data:`REFRESH_SECONDS` after it
was last built (what drifts without a record changing: cost so far, quiet for, disk
used), and a tick's events go to each listener as one write (:class:`Outbox`); the
samples carry the NOISY markers, which each open VM list fetched from ``GET
/v1/metrics`` after every sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bungalow.daemon.api.deps import Services
from bungalow.daemon.api.schemas import Event
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.telemetry.ticks import SampleTicks
from bungalow.daemon.tenancy.sessions import Session, Sessions

PING_SECONDS = 15.0
#: Messages a listener that reads nothing may fall behind by before it is let go.
BACKLOG = 256
#: Events read from the log in one tick at most.
EVENTS_PER_TICK = 500
#: Seconds the VM list may go without being built again while no VM's record changes.
REFRESH_SECONDS = 10.0


@dataclass(eq=False)
class Listener:
    """One open ``/live`` stream: who (``project`` None for the admin) and what waits."""

    session: Session
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(BACKLOG))

    @property
    def project(self) -> str | None:
        return self.session.project

    def put(self, message: str) -> None:
        """Queue ``message``; a listener too far behind is ended (its browser reconnects)."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)


def sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


class Outbox:
    """What one tick sends, gathered per listener and put as one message each: one write
    per listener a tick, not one per VM sample."""

    def __init__(self, listeners: set[Listener]) -> None:
        self._messages: dict[Listener, list[str]] = {listener: [] for listener in listeners}

    def to_scope(self, project: str | None, message: str) -> None:
        """To the listeners of exactly this scope (the admin's for None)."""
        for listener, messages in self._messages.items():
            if listener.project == project:
                messages.append(message)

    def to_visible(self, owner: str | None, message: str) -> None:
        """To the admin's listeners and those of ``owner``'s project (if it has one)."""
        for listener, messages in self._messages.items():
            if listener.project in (None, owner):
                messages.append(message)

    def deliver(self) -> None:
        for listener, messages in self._messages.items():
            if messages:
                listener.put("".join(messages))


class LiveHub:
    """Every ``/live`` listener, fed after each metrics sample by one task."""

    def __init__(self, services: Services, ticks: SampleTicks, sessions: Sessions) -> None:
        self.services = services
        self.ticks = ticks
        self.sessions = sessions
        self._listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._sent_vms: dict[str | None, str] = {}
        self._sent_samples: dict[str, float] = {}
        self._last_event = 0
        self._listed: list[VmRecord] | None = None
        self._listed_at = 0.0

    def vms_json(self, project: str | None, records: list[VmRecord] | None = None) -> str:
        """The VM list the scope sees, as ``GET /v1/vms`` answers it."""
        return json.dumps(
            [
                self.services.views.vm(vm).model_dump(mode="json")
                for vm in (self.services.vms.list() if records is None else records)
                if project is None or vm.project == project
            ]
        )

    async def stream(self, session: Session) -> AsyncIterator[str]:
        """The events of one listener until its session ends or it falls too far behind."""
        listener = Listener(session)
        self._join(listener)
        data = self.vms_json(session.project)
        self._sent_vms.setdefault(session.project, data)
        listener.put(sse("vms", data))
        try:
            while True:
                try:
                    message = await asyncio.wait_for(listener.queue.get(), PING_SECONDS)
                except TimeoutError:
                    message = ": ping\n\n"
                if message is None or self.sessions.find(session.id) is None:
                    return
                yield message
        finally:
            self._listeners.discard(listener)

    def _join(self, listener: Listener) -> None:
        if not self._listeners:
            newest = self.services.events.query(limit=1)
            self._last_event = newest[-1]["id"] if newest else 0
            self._sent_vms.clear()
            self._listed = None
        self._listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard-live")

    async def _run(self) -> None:
        while self._listeners:
            await self.ticks.wait()
            self.tick()

    def tick(self) -> None:
        """Send what changed since the last tick to every listener."""
        records = self.services.vms.list()
        owner = {vm.name: vm.project for vm in records}
        outbox = Outbox(self._listeners)
        if self._list_due(records):
            for project in {listener.project for listener in self._listeners}:
                data = self.vms_json(project, records)
                if self._sent_vms.get(project) != data:
                    self._sent_vms[project] = data
                    outbox.to_scope(project, sse("vms", data))
        for event in self.services.events.query(after=self._last_event, limit=EVENTS_PER_TICK):
            self._last_event = max(self._last_event, event["id"])
            message = sse("event", Event.model_validate(event).model_dump_json())
            outbox.to_visible(event["project"], message)
        self._samples(owner, outbox)
        outbox.deliver()

    def _list_due(self, records: list[VmRecord]) -> bool:
        """Whether to build the VM list again: a record changed, or it is getting old."""
        now = self.services.vms.clock.now()
        if records == self._listed and now - self._listed_at < REFRESH_SECONDS:
            return False
        self._listed, self._listed_at = records, now
        return True

    def _samples(self, owner: dict[str, str | None], outbox: Outbox) -> None:
        history = self.services.metrics.history
        for name in list(self._sent_samples):
            if name not in history:
                del self._sent_samples[name]
        for name, samples in history.items():
            if not samples or samples[-1].time <= self._sent_samples.get(name, 0.0):
                continue
            sample = samples[-1]
            self._sent_samples[name] = sample.time
            data: dict[str, Any] = {
                "vm": name,
                "time": sample.time,
                **sample.domstats(),
                "noisy_for": sorted(self.services.noisy.marked.get(name, ())),
                "throttled": sorted(self.services.noisy.throttled.get(name, {})),
            }
            outbox.to_visible(owner.get(name), sse("metrics", json.dumps(data)))
