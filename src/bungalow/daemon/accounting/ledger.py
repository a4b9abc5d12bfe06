"""The usage ledger: intervals of what each VM held, kept in SQLite, from which costs are made.

The ledger watches the store (:class:`~bungalow.daemon.state.store.StoreObserver`):
every VM row written is compared with the VM's open interval, and when its
billing kind (running or stopped), shape, owner, project, labels or the rates
differ, the open interval is closed and a new one opened at the same instant.
So every transition is accounted for wherever in the daemon it happens
(manager, snapshots, sandboxes, policies), without each of them having to
remember. A removed VM's interval is closed and its rows stay: its cost
remains in the history. A snapshot has an interval of its own from its
insertion to its deletion, charged to the VM it was taken of (a detached one
still to that VM: its owner caused it); sandbox templates are the daemon's own
cache and charged to nobody.

Across daemon restarts: QEMUs outlive the daemon, so an open running interval
simply goes on. The daemon writes a heartbeat every few seconds; at start-up
the changes found (a QEMU that died while no daemon watched, a row whose
interval a crash left unwritten) are dated at the last heartbeat, the last
moment anything was known, so nothing is counted twice and there is no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, replace

from bungalow.daemon.accounting.costs import charge, hourly
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import ACTIVE_STATES, VmState
from bungalow.daemon.state.records import (
    RUNNING,
    SNAPSHOT,
    STOPPED,
    Interval,
    Purpose,
    Rates,
    SnapshotRecord,
    VmRecord,
)
from bungalow.daemon.state.usage import UsageTable

log = logging.getLogger(__name__)

#: Seconds between heartbeats: the most a VM that died while no daemon ran is undercharged.
HEARTBEAT = 10.0


@dataclass(frozen=True)
class VmCost:
    """A VM's cost so far (all its intervals, snapshots included) and per hour now."""

    so_far: float
    per_hour: float
    currency: str


def _terms(interval: Interval) -> tuple[object, ...]:
    """Everything but the times: an interval whose terms change is split."""
    return (interval.vm_name, interval.kind, interval.cpus, interval.memory, interval.disk,
            interval.owner, interval.project, interval.labels, astuple(interval.rates))  # fmt: skip


class UsageLedger:
    """Keeps the usage intervals in step with the VM and snapshot rows it is told of."""

    def __init__(
        self, usage: UsageTable, clock: Clock, rates: Rates, currency: str = "USD"
    ) -> None:
        self.usage = usage
        self.clock = clock
        self.rates = rates
        self.currency = currency
        self._backdate: float | None = None

    def now(self) -> float:
        return self.clock.now() if self._backdate is None else self._backdate

    # -- what the store tells us ---------------------------------------------------------------

    def vm_written(self, vm: VmRecord) -> None:
        self._settle(vm.id, None, self._vm_interval(vm))

    def vm_deleted(self, vm_id: str) -> None:
        self.usage.close(vm_id, None, self.now())

    def snapshot_written(self, snapshot: SnapshotRecord, vm: VmRecord | None) -> None:
        wanted = self._snapshot_interval(snapshot, vm)
        if wanted is not None:
            self._settle(wanted.vm_id, snapshot.id, wanted)

    def snapshot_deleted(self, snapshot_id: str) -> None:
        self.usage.close_snapshot(snapshot_id, self.now())

    def _vm_interval(self, vm: VmRecord) -> Interval:
        kind = RUNNING if vm.state in ACTIVE_STATES else STOPPED
        # A suspended VM (its memory saved to a file) holds its disk and that file, no CPU.
        disk = vm.disk_size + (vm.memory if vm.state is VmState.SUSPENDED else 0)
        return Interval(
            vm_id=vm.id, vm_name=vm.name, kind=kind, cpus=vm.cpus, memory=vm.memory, disk=disk,
            began=self.now(), ended=None, rates=self.rates, owner=vm.owner, project=vm.project,
            labels=vm.labels,
        )  # fmt: skip

    def _snapshot_interval(self, snapshot: SnapshotRecord, vm: VmRecord | None) -> Interval | None:
        if snapshot.purpose is Purpose.TEMPLATE or vm is None:
            return None  # templates are the daemon's cache; a gone VM's stay as they were
        return Interval(
            vm_id=vm.id, vm_name=vm.name, kind=SNAPSHOT, cpus=0, memory=0, disk=snapshot.size,
            began=self.now(), ended=None, rates=self.rates, owner=vm.owner, project=vm.project,
            labels=vm.labels, snapshot_id=snapshot.id,
        )  # fmt: skip

    def _settle(self, vm_id: str, snapshot_id: str | None, wanted: Interval) -> None:
        """Make ``wanted`` the open interval, closing a different one at the same instant."""
        current = self.usage.open_interval(vm_id, snapshot_id)
        if current is not None and _terms(current) == _terms(wanted):
            return
        if current is not None and current.began >= wanted.began:
            self.usage.drop_open(vm_id, snapshot_id)  # changed again at the same instant
        elif current is not None:
            self.usage.close(vm_id, snapshot_id, wanted.began)
        self.usage.open(wanted)

    # -- restarts ------------------------------------------------------------------------------

    def beat(self) -> None:
        self.usage.beat(self.clock.now())

    @contextlib.contextmanager
    def backdated(self) -> Iterator[None]:
        """Date what changes inside at the last heartbeat (start-up: recovery, reconcile)."""
        seen = self.usage.last_beat()
        self._backdate = None if seen is None else min(seen, self.clock.now())
        try:
            yield
        finally:
            self._backdate = None

    def reconcile(
        self, vms: Iterable[VmRecord], snapshots: Iterable[tuple[SnapshotRecord, VmRecord | None]]
    ) -> None:
        """Bring the open intervals in line with the rows (a crash may have come between a row
        and its interval), and re-price open intervals if config.toml's rates changed.

        ``snapshots`` pairs each snapshot with the VM it is charged to (or None).
        """
        by_id = {vm.id: vm for vm in vms}
        pairs = {snapshot.id: (snapshot, vm) for snapshot, vm in snapshots}
        for interval in self.usage.intervals(open_only=True):
            gone = interval.vm_id not in by_id if interval.snapshot_id is None else (
                interval.snapshot_id not in pairs
            )  # fmt: skip
            if gone:
                self.usage.close(interval.vm_id, interval.snapshot_id, self.now())
        for record in by_id.values():
            self.vm_written(record)
        open_snapshots = set()
        for interval in self.usage.intervals(open_only=True):
            if interval.snapshot_id is not None:
                open_snapshots.add(interval.snapshot_id)
                if interval.rates != self.rates:
                    self.usage.close(interval.vm_id, interval.snapshot_id, self.now())
                    self.usage.open(replace(interval, began=self.now(), rates=self.rates))
        for snapshot, charged in pairs.values():
            if snapshot.vm_id and snapshot.id not in open_snapshots:
                self.snapshot_written(snapshot, charged)

    async def run_heartbeat(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # the database's disk is full: the next beat will do
                log.warning("could not write the usage heartbeat: %s", exc)
            await asyncio.sleep(HEARTBEAT)

    # -- reading -------------------------------------------------------------------------------

    def intervals(
        self, since: float | None = None, until: float | None = None, project: str | None = None
    ) -> list[Interval]:
        """Intervals overlapping ``[since, until)``, of one project if ``project`` is given."""
        return self.usage.intervals(since, until, project)

    def cost_of(self, vm_id: str, now: float | None = None) -> VmCost:
        """What the VM ``vm_id`` has cost until ``now`` (its snapshots included), and what
        it costs per hour as it is now. The sprawl report and ``ls`` ask this."""
        now = self.clock.now() if now is None else now
        so_far = per_hour = 0.0
        for interval in self.usage.of_vm(vm_id):
            so_far += charge(interval, 0.0, now).total
            if interval.ended is None:
                per_hour += hourly(interval)
        return VmCost(so_far=so_far, per_hour=per_hour, currency=self.currency)

    def price_of(self, vm: VmRecord) -> tuple[float, float]:
        """``(per hour now, so far)`` of ``vm``: the cost columns of ``bungalow sprawl``."""
        cost = self.cost_of(vm.id)
        return cost.per_hour, cost.so_far
