"""What VMs cost: pure arithmetic on usage intervals, no database and no clock.

A usage interval (state/records.py, kept by ledger.py) says that from
``began`` to ``ended`` a VM was ``running`` (its vCPUs and memory held;
paused counts as running), ``stopped`` (only its disk held), or that a
``snapshot`` of it took ``disk`` bytes. It carries the rates that were in
force when it was opened, so changing the prices in config.toml re-prices the
hours to come, not the history.

- vCPUs and memory are charged per hour while running;
- disk is charged per GiB-month (730 h, as cloud price sheets count a month)
  for every kind: a VM's provisioned disk whether it runs or not, a snapshot's
  bytes on the host for as long as it stands.

Reports clip each interval to a window ``[since, until)`` and sum the pieces by
VM, owner, project or the value of one label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from bungalow.daemon.state.records import RUNNING, SNAPSHOT, STOPPED, Interval
from bungalow.errors import UserError
from bungalow.names import validate_labels

HOURS_PER_MONTH = 730.0
GIB = float(1 << 30)

KINDS = (RUNNING, STOPPED, SNAPSHOT)

GROUPINGS = ("vm", "owner", "project")
#: What a group is called when its intervals have no owner, project or such label.
NONE = "-"


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
