"""Routes for sprawl and the audit log: what looks forgotten, acting on it, what was done."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import HTTPConnection

from bungalow.daemon.api.deps import Caller, Manager
from bungalow.daemon.server.wiring_policies import parse_since, policies_of
from bungalow.daemon.state import audit

router = APIRouter(prefix="/v1")


@router.get("/sprawl")
async def sprawl(connection: HTTPConnection, caller: Caller) -> list[dict[str, Any]]:
    """Expired leases, idle VMs, orphans and long-stopped VMs, each with why and what next."""
    return [finding.to_json() for finding in policies_of(connection).sprawl.find(caller)]


@router.post("/sprawl/apply")
async def apply_sprawl(connection: HTTPConnection, caller: Caller) -> list[dict[str, Any]]:
    """Carry out the action listed for each VM; one result (or error) per VM."""
    return await policies_of(connection).sprawl.apply(caller)


@router.get("/events")
async def events(
    manager: Manager,
    caller: Caller,
    connection: HTTPConnection,
    vm: str | None = None,
    since: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The audit log, oldest first: a project's token sees its own VMs' events only."""
    start = None if since is None else parse_since(since, policies_of(connection).clock.now())
    return audit.query(
        manager.store.connection,
        vm=vm,
        since=start,
        project=caller,
        limit=max(1, min(limit, 10000)),
    )
