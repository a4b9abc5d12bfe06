"""The cost report of ``GET /v1/costs``: charges within a range, grouped, with a total.

``since`` and ``until`` are read against the daemon's clock (so ``2h`` means
two hours before the daemon's now); a project sees only its own usage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bungalow.daemon.accounting.costs import Charge, parse_grouping, totals
from bungalow.daemon.accounting.ledger import UsageLedger
from bungalow.errors import UserError
from bungalow.units import parse_moment


@dataclass(frozen=True)
class CostLine:
    """One group's charges: hours running and stopped, and cost by resource."""

    group: str
    charge: Charge
    vm_id: str | None = None
    #: With ``by=vm``: the VM no longer exists.
    removed: bool = False


@dataclass(frozen=True)
class CostReport:
    by: str
    since: float
    until: float
    currency: str
    #: The rates in force now; the history keeps its own.
    rates: dict[str, float]
    lines: list[CostLine] = field(default_factory=list)
    total: Charge = field(default_factory=Charge)


def cost_report(
    ledger: UsageLedger,
    existing: set[str],
    *,
    by: str = "vm",
    since: str | None = None,
    until: str | None = None,
    project: str | None = None,
) -> CostReport:
    """Charges per group over ``[since, until)`` (dates, or durations ago; until defaults to
    now, since to the first record). ``existing`` holds the ids of the VMs that exist.
    UserError with a sentence for a bad grouping or range."""
    now = ledger.clock.now()
    grouping = parse_grouping(by)
    start = None if since is None else parse_moment(since, now, what="--since")
    end = now if until is None else min(now, parse_moment(until, now, what="--until"))
    if start is not None and start >= end:
        raise UserError(
            f"The range from --since {since} to --until {until or 'now'} is empty; "
            "since must come before until, and before now."
        )
    intervals = ledger.intervals(start, end, project)
    first = min((i.began for i in intervals), default=end)
    start = first if start is None else start
    groups = totals(intervals, grouping, start, end)
    if grouping == "vm":
        names = {i.vm_id: i.vm_name for i in intervals}
        lines = [
            CostLine(names[vm_id], charge, vm_id, vm_id not in existing)
            for vm_id, charge in groups.items()
        ]
    else:
        lines = [CostLine(key, charge) for key, charge in groups.items()]
    lines.sort(key=lambda line: (-line.charge.total, line.group))
    whole = Charge()
    for charge in groups.values():
        whole.add(charge)
    return CostReport(
        by=grouping, since=start, until=end, currency=ledger.currency,
        rates=asdict(ledger.rates), lines=lines, total=whole,
    )  # fmt: skip
