"""The usage ledger: intervals of what each VM held, kept in SQLite, from which costs are made.

The ledger watches the store (:class:`~bungalow.daemon.store.StoreObserver`):
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
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import astuple, dataclass, replace

from bungalow.daemon.accounting.costs import (
    RUNNING,
    SNAPSHOT,
    STOPPED,
    Interval,
    Rates,
    charge,
    hourly,
)
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import ACTIVE_STATES
from bungalow.daemon.state.store import SnapshotRecord, Store, VmRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm_id TEXT NOT NULL,
    vm_name TEXT NOT NULL,
    snapshot_id TEXT,
    kind TEXT NOT NULL,
    cpus INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    disk INTEGER NOT NULL,
    owner TEXT,
    project TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    vcpu_hour REAL NOT NULL,
    memory_gib_hour REAL NOT NULL,
    disk_gib_month REAL NOT NULL,
    began REAL NOT NULL,
    ended REAL
);
CREATE INDEX IF NOT EXISTS usage_open ON usage (vm_id) WHERE ended IS NULL;
CREATE INDEX IF NOT EXISTS usage_vm ON usage (vm_id);
CREATE TABLE IF NOT EXISTS usage_heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    time REAL NOT NULL
);
"""

#: Seconds between heartbeats: the most a VM that died while no daemon ran is undercharged.
HEARTBEAT = 10.0
#: A suspended VM (its memory saved to a file) holds its disk and that file, no CPU.
_SUSPENDED = "suspended"


@dataclass(frozen=True)
class VmCost:
    """A VM's cost so far (all its intervals, snapshots included) and per hour now."""

    so_far: float
    per_hour: float
    currency: str


def _row_to_interval(row: sqlite3.Row) -> Interval:
    return Interval(
        vm_id=row["vm_id"],
        vm_name=row["vm_name"],
        kind=row["kind"],
        cpus=row["cpus"],
        memory=row["memory"],
        disk=row["disk"],
        began=row["began"],
        ended=row["ended"],
        rates=Rates(row["vcpu_hour"], row["memory_gib_hour"], row["disk_gib_month"]),
        owner=row["owner"],
        project=row["project"],
        labels=json.loads(row["labels"] or "{}"),
        snapshot_id=row["snapshot_id"],
    )


def _terms(interval: Interval) -> tuple[object, ...]:
    """Everything but the times: an interval whose terms change is split."""
    return (interval.vm_name, interval.kind, interval.cpus, interval.memory, interval.disk,
            interval.owner, interval.project, interval.labels, astuple(interval.rates))  # fmt: skip


class UsageLedger:
    def __init__(self, store: Store, clock: Clock, rates: Rates, currency: str = "USD") -> None:
        self.store = store
        self.clock = clock
        self.rates = rates
        self.currency = currency
        self._db = store.connection
        self._db.executescript(_SCHEMA)
        self._backdate: float | None = None

    def now(self) -> float:
        return self.clock.now() if self._backdate is None else self._backdate

    # -- what the store tells us ---------------------------------------------------------------

    def vm_written(self, vm: VmRecord) -> None:
        self._settle(vm.id, None, self._vm_interval(vm))

    def vm_deleted(self, vm_id: str) -> None:
        self._close(vm_id, None, self.now())

    def snapshot_written(self, snapshot: SnapshotRecord) -> None:
        wanted = self._snapshot_interval(snapshot)
        if wanted is not None:
            self._settle(wanted.vm_id, snapshot.id, wanted)

    def snapshot_deleted(self, snapshot_id: str) -> None:
        self._db.execute(
            "UPDATE usage SET ended = MAX(began, ?) WHERE snapshot_id = ? AND ended IS NULL",
            (self.now(), snapshot_id),
        )

    def _vm_interval(self, vm: VmRecord) -> Interval:
        state = str(vm.state)
        kind = RUNNING if vm.state in ACTIVE_STATES else STOPPED
        disk = vm.disk_size + (vm.memory if state == _SUSPENDED else 0)
        return Interval(
            vm_id=vm.id, vm_name=vm.name, kind=kind, cpus=vm.cpus, memory=vm.memory, disk=disk,
            began=self.now(), ended=None, rates=self.rates, owner=vm.owner, project=vm.project,
            labels=vm.labels,
        )  # fmt: skip

    def _snapshot_interval(self, snapshot: SnapshotRecord) -> Interval | None:
        if snapshot.purpose == "template":
            return None
        vm = self.store.find(snapshot.vm_name)  # a fork's snapshot has no vm_id, only the name
        if vm is None or (snapshot.vm_id and vm.id != snapshot.vm_id):
            return None
        return Interval(
            vm_id=vm.id, vm_name=vm.name, kind=SNAPSHOT, cpus=0, memory=0, disk=snapshot.size,
            began=self.now(), ended=None, rates=self.rates, owner=vm.owner, project=vm.project,
            labels=vm.labels, snapshot_id=snapshot.id,
        )  # fmt: skip

    def _open(self, vm_id: str, snapshot_id: str | None) -> Interval | None:
        query = "SELECT * FROM usage WHERE vm_id = ? AND ended IS NULL AND snapshot_id IS ?"
        row = self._db.execute(query, (vm_id, snapshot_id)).fetchone()
        return _row_to_interval(row) if row else None

    def _settle(self, vm_id: str, snapshot_id: str | None, wanted: Interval) -> None:
        """Make ``wanted`` the open interval, closing a different one at the same instant."""
        current = self._open(vm_id, snapshot_id)
        if current is not None and _terms(current) == _terms(wanted):
            return
        if current is not None:
            self._close(vm_id, snapshot_id, wanted.began)
        self._insert(wanted)

    def _close(self, vm_id: str, snapshot_id: str | None, when: float) -> None:
        self._db.execute(
            "UPDATE usage SET ended = MAX(began, ?) "
            "WHERE vm_id = ? AND snapshot_id IS ? AND ended IS NULL",
            (when, vm_id, snapshot_id),
        )

    def _insert(self, interval: Interval) -> None:
        rates = interval.rates
        self._db.execute(
            "INSERT INTO usage (vm_id, vm_name, snapshot_id, kind, cpus, memory, disk, owner, "
            "project, labels, vcpu_hour, memory_gib_hour, disk_gib_month, began, ended) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (interval.vm_id, interval.vm_name, interval.snapshot_id, interval.kind,
             interval.cpus, interval.memory, interval.disk, interval.owner, interval.project,
             json.dumps(interval.labels), rates.vcpu_hour, rates.memory_gib_hour,
             rates.disk_gib_month, interval.began),
        )  # fmt: skip

    # -- restarts ------------------------------------------------------------------------------

    def last_seen(self) -> float | None:
        row = self._db.execute("SELECT time FROM usage_heartbeat WHERE id = 1").fetchone()
        return None if row is None else float(row["time"])

    def beat(self) -> None:
        self._db.execute(
            "INSERT INTO usage_heartbeat (id, time) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET time = excluded.time",
            (self.clock.now(),),
        )

    @contextlib.contextmanager
    def backdated(self) -> Iterator[None]:
        """Date what changes inside at the last heartbeat (start-up: reattach, reconcile)."""
        seen = self.last_seen()
        self._backdate = None if seen is None else min(seen, self.clock.now())
        try:
            yield
        finally:
            self._backdate = None

    def reconcile(self) -> None:
        """Bring the open intervals in line with the rows (a crash may have come between a row
        and its interval), and re-price open intervals if config.toml's rates changed."""
        vms = {vm.id: vm for vm in self.store.list()}
        snapshots = {s.id: s for s in self.store.snapshots()}
        for row in self._db.execute("SELECT * FROM usage WHERE ended IS NULL").fetchall():
            gone = row["vm_id"] not in vms if row["snapshot_id"] is None else (
                row["snapshot_id"] not in snapshots
            )  # fmt: skip
            if gone:
                self._close(row["vm_id"], row["snapshot_id"], self.now())
        for vm in vms.values():
            self.vm_written(vm)
        open_snapshots = set()
        for interval in self.intervals(open_only=True):
            if interval.snapshot_id is not None:
                open_snapshots.add(interval.snapshot_id)
                if interval.rates != self.rates:
                    self._close(interval.vm_id, interval.snapshot_id, self.now())
                    self._insert(replace(interval, began=self.now(), rates=self.rates))
        for snapshot in snapshots.values():
            if snapshot.vm_id and snapshot.id not in open_snapshots:
                self.snapshot_written(snapshot)

    async def run_heartbeat(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(HEARTBEAT)

    # -- reading -------------------------------------------------------------------------------

    def intervals(
        self,
        since: float | None = None,
        until: float | None = None,
        project: str | None = None,
        *,
        open_only: bool = False,
    ) -> list[Interval]:
        """Intervals overlapping ``[since, until)``, of one project if ``project`` is given."""
        query = "SELECT * FROM usage WHERE " + ("ended IS NULL" if open_only else "1")
        args: list[object] = []
        if since is not None:
            query, args = query + " AND (ended IS NULL OR ended > ?)", [since]
        if until is not None:
            query, args = query + " AND began < ?", [*args, until]
        if project is not None:
            query, args = query + " AND project = ?", [*args, project]
        rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [_row_to_interval(row) for row in rows]

    def of_vm(self, vm_id: str) -> list[Interval]:
        rows = self._db.execute("SELECT * FROM usage WHERE vm_id = ? ORDER BY id", (vm_id,))
        return [_row_to_interval(row) for row in rows.fetchall()]

    def cost_of(self, vm_id: str, now: float | None = None) -> VmCost:
        """What the VM ``vm_id`` has cost until ``now`` (its snapshots included), and what
        it costs per hour as it is now. The sprawl report and ``ls`` ask this."""
        now = self.clock.now() if now is None else now
        so_far = per_hour = 0.0
        for interval in self.of_vm(vm_id):
            so_far += charge(interval, 0.0, now).total
            if interval.ended is None:
                per_hour += hourly(interval)
        return VmCost(so_far=so_far, per_hour=per_hour, currency=self.currency)

    def price_of(self, vm: VmRecord) -> tuple[float, float]:
        """``(per hour now, so far)`` of ``vm``: the cost columns of ``bungalow sprawl``."""
        cost = self.cost_of(vm.id)
        return cost.per_hour, cost.so_far
