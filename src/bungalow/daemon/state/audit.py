"""The audit log: every change to a VM as an event saying who, what, why and when.

Events live in the ``events`` table of the daemon's database, so they outlast
restarts. Each row names the VM (by name: the VM may be gone), a ``kind``
(``created``, ``lease-warning``, ``suspended``...), a message, the *actor*
and the *reason*. The actor is whoever caused the change: ``admin`` or
``project NAME`` for a request (set by access.ProjectScope), ``policy lease``,
``policy idle``, ``sprawl --apply`` for the reaper and sprawl; it travels in
a context variable, so code deep in the manager records the right actor
without every call passing it down. The VM's project is copied into the row
when it is written, so a project's token still sees the events of its VMs
after they are removed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

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


def record(
    db: sqlite3.Connection, when: float, vm: str | None, kind: str, message: str, reason: str = ""
) -> None:
    row = None
    if vm is not None:  # a removed VM's last events keep the project its earlier ones had
        row = db.execute("SELECT project FROM vms WHERE name = ?", (vm,)).fetchone() or (
            db.execute(
                "SELECT project FROM events WHERE vm = ? ORDER BY id DESC LIMIT 1", (vm,)
            ).fetchone()
        )
    db.execute(
        "INSERT INTO events (time, vm, kind, message, actor, reason, project) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (when, vm, kind, message, ACTOR.get(), reason or REASON.get(), row[0] if row else None),
    )


def query(
    db: sqlite3.Connection,
    *,
    vm: str | None = None,
    since: float | None = None,
    project: str | None = None,
    kinds: tuple[str, ...] = (),
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest ``limit`` events matching every filter given, oldest first."""
    where: list[str] = ["1"]
    args: list[object] = []
    for column, value in (("vm", vm), ("project", project)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if since is not None:
        where.append("time >= ?")
        args.append(since)
    if kinds:
        where.append(f"kind IN ({', '.join('?' for _ in kinds)})")
        args.extend(kinds)
    rows = db.execute(
        f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [dict(row) for row in reversed(rows)]
