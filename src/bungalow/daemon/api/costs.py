"""``GET /v1/costs``: accrued cost over a time range, per VM, owner, project or label.

``since`` and ``until`` are read against the daemon's clock (so ``2h`` means two
hours before the daemon's now); a project's token sees only its project's usage.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import cast

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from bungalow.daemon.accounting.costs import Charge, parse_grouping, parse_moment, totals
from bungalow.daemon.accounting.ledger import UsageLedger
from bungalow.daemon.api.access import caller_project
from bungalow.errors import UserError

router = APIRouter()


class CostRow(BaseModel):
    group: str = Field(description="a VM's name, an owner, a project or a label's value; - none")
    vm_id: str | None = Field(default=None, description="with by=vm")
    removed: bool = Field(default=False, description="with by=vm: the VM no longer exists")
    running_hours: float
    stopped_hours: float
    cpu: float
    memory: float
    disk: float = Field(description="disk and snapshots")
    total: float
    intervals: int = Field(description="usage records that make up this row")


class CostReport(BaseModel):
    by: str
    since: float
    until: float
    currency: str
    rates: dict[str, float] = Field(description="the rates in force now; history keeps its own")
    rows: list[CostRow]
    total: CostRow


def _row(group: str, charge: Charge, vm_id: str | None = None, removed: bool = False) -> CostRow:
    return CostRow(
        group=group,
        vm_id=vm_id,
        removed=removed,
        running_hours=charge.running_seconds / 3600,
        stopped_hours=charge.stopped_seconds / 3600,
        cpu=charge.cpu,
        memory=charge.memory,
        disk=charge.disk,
        total=charge.total,
        intervals=charge.intervals,
    )


@router.get("/v1/costs")
async def costs(
    connection: HTTPConnection, by: str = "vm", since: str | None = None, until: str | None = None
) -> CostReport:
    ledger = cast(UsageLedger, connection.app.state.usage)
    now = ledger.clock.now()
    grouping = parse_grouping(by)
    start = None if since is None else parse_moment(since, now, what="--since")
    end = now if until is None else min(now, parse_moment(until, now, what="--until"))
    if start is not None and start >= end:
        raise UserError(
            f"The range from --since {since} to --until {until or 'now'} is empty; "
            "since must come before until, and before now."
        )
    intervals = ledger.intervals(start, end, caller_project(connection.state))
    first = min((i.began for i in intervals), default=end)
    start = first if start is None else start
    groups = totals(intervals, grouping, start, end)
    rows = []
    if grouping == "vm":
        names = {i.vm_id: i.vm_name for i in intervals}
        existing = {vm.id for vm in ledger.store.list()}
        for vm_id, charge in groups.items():
            rows.append(_row(names[vm_id], charge, vm_id, vm_id not in existing))
    else:
        rows = [_row(key, charge) for key, charge in groups.items()]
    rows.sort(key=lambda row: (-row.total, row.group))
    whole = Charge()
    for charge in groups.values():
        whole.add(charge)
    return CostReport(
        by=grouping,
        since=start,
        until=end,
        currency=ledger.currency,
        rates=asdict(ledger.rates),
        rows=rows,
        total=_row("total", whole),
    )
