"""The audit log: every change to a VM as an event saying who, what, why and when.

Events live in the ``events`` table, so they outlast restarts. Each row names
the VM (by name: the VM may be gone), a ``kind`` (``created``,
``lease-warning``, ``suspended``...), a message, the *actor*, the *reason* and,
for events about something other than a VM (a project), its ``subject``. The
actor is whoever caused the change: ``admin`` or ``project NAME`` for a
request (set by api/access.py), ``policy lease``, ``policy idle``, ``sprawl
--apply`` for the reaper and sprawl; it travels in a context variable, so code
deep in the VM layer records the right actor without every call passing it
down. The VM's project is copied into the row when it is written, so a
project's token still sees the events of its VMs after they are removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.db import Database

#: Who is acting in the current task; ``daemon`` for the daemon's own work.
ACTOR: ContextVar[str] = ContextVar("bungalow_actor", default="daemon")
#: Why, when a policy acts: every event of the action (stopped, removed...) carries it.
REASON: ContextVar[str] = ContextVar("bungalow_reason", default="")


@contextlib.contextmanager
def acting_as(actor: str, reason: str = "") -> Iterator[None]:
    """Record every event written inside the block as done by ``actor`` for ``reason``."""
    tokens = ACTOR.set(actor), REASON.set(reason)
    try:
        yield
    finally:
        ACTOR.reset(tokens[0])
        REASON.reset(tokens[1])


class EventLog:
    """Appends events and answers queries on them; times come from the daemon's Clock."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def add(
        self,
        vm: str | None,
        kind: str,
        message: str,
        reason: str = "",
        *,
        subject: str | None = None,
    ) -> None:
        """Append one event; the actor and (unless given) the reason come from the context."""
        row = None
        if vm is not None:  # a removed VM's last events keep the project its earlier ones had
            row = self._db.one("SELECT project FROM vms WHERE name = ?", (vm,)) or self._db.one(
                "SELECT project FROM events WHERE vm = ? ORDER BY id DESC LIMIT 1", (vm,)
            )
        self._db.execute(
            "INSERT INTO events (time, vm, kind, message, actor, reason, project, subject) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self._clock.now(), vm, kind, message, ACTOR.get(), reason or REASON.get(),
             row[0] if row else None, subject),
        )  # fmt: skip

    def query(
        self,
        *,
        vm: str | None = None,
        since: float | None = None,
        project: str | None = None,
        kinds: tuple[str, ...] = (),
        limit: int = 100,
        after: int | None = None,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` events matching every filter given (``after``: with an id
        above it), oldest first.

        Each is a dict of the table's columns: id, time, vm, kind, message, actor,
        reason, project, subject.
        """
        where: list[str] = ["1"]
        args: list[object] = []
        for column, value in (("vm", vm), ("project", project)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if after is not None:
            where.append("id > ?")
            args.append(after)
        if kinds:
            where.append(f"kind IN ({', '.join('?' for _ in kinds)})")
            args.extend(kinds)
        rows = self._db.all(
            f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [dict(row) for row in reversed(rows)]

    def last(
        self, kinds: tuple[str, ...], *, vm: str | None = None, subject: str | None = None
    ) -> float | None:
        """When the latest event of one of ``kinds`` about ``vm`` or ``subject`` happened."""
        where = [f"kind IN ({', '.join('?' for _ in kinds)})"]
        args: list[object] = list(kinds)
        for column, value in (("vm", vm), ("subject", subject)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        row = self._db.one(f"SELECT MAX(time) FROM events WHERE {' AND '.join(where)}", args)
        return None if row is None or row[0] is None else float(row[0])
