"""What VMs cost: pure arithmetic on usage intervals, no database and no clock.

A usage interval (see usage.py) says that from ``began`` to ``ended`` a VM was
``running`` (its vCPUs and memory held; paused counts as running), ``stopped``
(only its disk held), or that a ``snapshot`` of it took ``disk`` bytes. It
carries the rates that were in force when it was opened, so changing the prices
in config.toml re-prices the hours to come, not the history.

- vCPUs and memory are charged per hour while running;
- disk is charged per GiB-month (730 h, as cloud price sheets count a month)
  for every kind: a VM's provisioned disk whether it runs or not, a snapshot's
  bytes on the host for as long as it stands.

Reports clip each interval to a window ``[since, until)`` and sum the pieces by
VM, owner, project or the value of one label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from bungalow.errors import UserError
from bungalow.names import validate_labels

HOURS_PER_MONTH = 730.0
GIB = float(1 << 30)

RUNNING = "running"
STOPPED = "stopped"
SNAPSHOT = "snapshot"
KINDS = (RUNNING, STOPPED, SNAPSHOT)

GROUPINGS = ("vm", "owner", "project")
#: What a group is called when its intervals have no owner, project or such label.
NONE = "-"


@dataclass(frozen=True)
class Rates:
    """Prices per unit of time; the defaults are of the order of a public cloud's
    on-demand general-purpose machines and block storage."""

    vcpu_hour: float = 0.02
    memory_gib_hour: float = 0.0025
    disk_gib_month: float = 0.08


@dataclass(frozen=True)
class Interval:
    vm_id: str
    vm_name: str
    kind: str
    cpus: int
    memory: int
    disk: int
    began: float
    ended: float | None
    rates: Rates = field(default_factory=Rates)
    owner: str | None = None
    project: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    snapshot_id: str | None = None


@dataclass
class Charge:
    """What a set of intervals came to within a window."""

    running_seconds: float = 0.0
    stopped_seconds: float = 0.0
    cpu: float = 0.0
    memory: float = 0.0
    disk: float = 0.0
    intervals: int = 0

    @property
    def total(self) -> float:
        return self.cpu + self.memory + self.disk

    def add(self, other: Charge) -> None:
        self.running_seconds += other.running_seconds
        self.stopped_seconds += other.stopped_seconds
        self.cpu += other.cpu
        self.memory += other.memory
        self.disk += other.disk
        self.intervals += other.intervals


def charge(interval: Interval, since: float, until: float) -> Charge:
    """The part of ``interval`` inside ``[since, until)``, priced; an open interval
    lasts until ``until`` (the caller passes no later than now)."""
    end = until if interval.ended is None else min(interval.ended, until)
    overlaps = interval.began < until and (interval.ended is None or interval.ended > since)
    if not overlaps:
        return Charge()
    seconds = max(0.0, end - max(interval.began, since))
    hours = seconds / 3600.0
    rates = interval.rates
    running = interval.kind == RUNNING
    return Charge(
        running_seconds=seconds if running else 0.0,
        stopped_seconds=seconds if interval.kind == STOPPED else 0.0,
        cpu=hours * interval.cpus * rates.vcpu_hour if running else 0.0,
        memory=hours * interval.memory / GIB * rates.memory_gib_hour if running else 0.0,
        disk=hours * interval.disk / GIB * rates.disk_gib_month / HOURS_PER_MONTH,
        intervals=1,
    )


def hourly(interval: Interval) -> float:
    """What ``interval`` costs per hour (whether it is still open or not)."""
    return charge(replace(interval, began=0.0, ended=None), 0.0, 3600.0).total


def parse_grouping(text: str) -> str:
    """``vm``, ``owner``, ``project`` or ``label:KEY``; anything else is one sentence."""
    if text in GROUPINGS:
        return text
    prefix, sep, key = text.partition(":")
    if prefix == "label" and sep:
        validate_labels({key: ""})
        return text
    raise UserError(
        f"Cannot group costs by {text!r}; use vm, owner, project or label:KEY (such as label:team)."
    )


def group_key(interval: Interval, by: str) -> str:
    """The group ``interval`` falls in: a VM's id, an owner, a project, a label's value."""
    if by == "vm":
        return interval.vm_id
    if by == "owner":
        return interval.owner or NONE
    if by == "project":
        return interval.project or NONE
    return interval.labels.get(by.partition(":")[2], NONE)


def totals(intervals: Iterable[Interval], by: str, since: float, until: float) -> dict[str, Charge]:
    """Charges within ``[since, until)`` summed per group; groups with no interval in the
    window are left out."""
    groups: dict[str, Charge] = {}
    for interval in intervals:
        part = charge(interval, since, until)
        if part.intervals:
            groups.setdefault(group_key(interval, by), Charge()).add(part)
    return groups


_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_AGO_FACTORS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_moment(text: str, now: float, *, what: str = "--since") -> float:
    """Seconds since the epoch for ``now``, a date or time (ISO 8601, local time unless it
    names a zone) or a duration ago (``2h``, ``7d``, ``1w``)."""
    if text.strip() == "now":
        return now
    match = _AGO.match(text)
    if match:
        return now - float(match.group(1)) * _AGO_FACTORS[match.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UserError(
            f"The {what} value {text!r} is neither a date nor a duration; write a date such "
            "as 2026-11-01 or 2026-11-01T09:30, or how long ago, such as 2h or 7d."
        ) from None
