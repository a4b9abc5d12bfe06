"""``GET /v1/costs``: accrued cost over a time range, per VM, owner, project or label."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from bungalow.daemon.accounting.costs import Charge
from bungalow.daemon.accounting.report import cost_report
from bungalow.daemon.api.deps import Caller, Svc
from bungalow.daemon.api.schemas import CostReport, CostRow
from bungalow.daemon.api.schemas.fields import GROUPING_PATTERN, MOMENT

router = APIRouter()


def _row(group: str, charge: Charge, vm_id: str | None = None, removed: bool = False) -> CostRow:
    return CostRow(
        group=group, vm_id=vm_id, removed=removed,
        running_hours=charge.running_seconds / 3600, stopped_hours=charge.stopped_seconds / 3600,
        cpu=charge.cpu, memory=charge.memory, disk=charge.disk, total=charge.total,
        intervals=charge.intervals,
    )  # fmt: skip


@router.get("/v1/costs")
async def costs(
    svc: Svc,
    caller: Caller,
    by: Annotated[str, Query(json_schema_extra={"pattern": GROUPING_PATTERN})] = "vm",
    since: Annotated[str | None, Query(description=MOMENT)] = None,
    until: Annotated[str | None, Query(description=MOMENT)] = None,
) -> CostReport:
    """Charges between ``since`` and ``until`` (dates, or durations before now), grouped
    ``by`` vm, owner, project or label:KEY; a project's token sees its own usage only.

    The schema shows what ``by`` may be; a value outside it, or a moment that is none,
    is refused here with a sentence naming the CLI's option (``--by``, ``--since``)."""
    existing = {vm.id for vm in svc.vms.list()}
    report = cost_report(svc.ledger, existing, by=by, since=since, until=until, project=caller)
    return CostReport(
        by=report.by, since=report.since, until=report.until, currency=report.currency,
        rates=report.rates, total=_row("total", report.total),
        rows=[_row(line.group, line.charge, line.vm_id, line.removed) for line in report.lines],
    )  # fmt: skip
