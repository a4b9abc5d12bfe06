"""Routes for sprawl and the audit log: what looks forgotten, acting on it, what was done."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from bungalow.daemon.api.deps import Caller, Svc
from bungalow.daemon.api.schemas import Event, Finding, SprawlResult
from bungalow.daemon.api.schemas.fields import MOMENT
from bungalow.units import parse_moment

router = APIRouter(prefix="/v1")


@router.get("/sprawl")
async def sprawl(svc: Svc, caller: Caller) -> list[Finding]:
    """Expired leases, idle VMs, orphans and long-stopped VMs, each with why and what next."""
    return [Finding.model_validate(asdict(finding)) for finding in svc.sprawl.find(caller)]


@router.post("/sprawl/apply", response_model_exclude_none=True)
async def apply_sprawl(svc: Svc, caller: Caller) -> list[SprawlResult]:
    """Carry out the action listed for each VM; one result (or error) per VM."""
    return [SprawlResult.model_validate(result) for result in await svc.sprawl.apply(caller)]


@router.get("/events")
async def events(
    svc: Svc,
    caller: Caller,
    vm: str | None = None,
    since: Annotated[str | None, Query(description=MOMENT)] = None,
    limit: Annotated[int, Query(ge=1, le=10000, description="at most this many, the newest")] = 100,
) -> list[Event]:
    """The audit log, oldest first: a project's token sees its own VMs' events only.

    ``since`` is a date or a duration before the daemon's now (``1h``, ``7d``, ``1w``).
    """
    start = None if since is None else parse_moment(since, svc.vms.clock.now())
    found = svc.events.query(vm=vm, since=start, project=caller, limit=limit)
    return [Event.model_validate(event) for event in found]
