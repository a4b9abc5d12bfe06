"""Records and stores for the daemon's unit tests: a real SQLite file, no VM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.db import Database
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.state.store import Store, StoreObserver

GIB = 1 << 30
T0 = 1_700_000_000.0

#: The moves from ``created`` to each state, as the daemon makes them.
PATHS: dict[VmState, tuple[VmState, ...]] = {
    VmState.CREATED: (),
    VmState.STARTING: (VmState.STARTING,),
    VmState.RUNNING: (VmState.STARTING, VmState.RUNNING),
    VmState.PAUSED: (VmState.STARTING, VmState.RUNNING, VmState.PAUSED),
    VmState.STOPPING: (VmState.STARTING, VmState.RUNNING, VmState.STOPPING),
    VmState.STOPPED: (VmState.STARTING, VmState.RUNNING, VmState.STOPPED),
    VmState.FAILED: (VmState.STARTING, VmState.FAILED),
    VmState.SUSPENDED: (VmState.STARTING, VmState.RUNNING, VmState.SUSPENDED),
}


class SetClock(Clock):
    """A clock a test sets by hand (a daemon's reads the BUNGALOW_TEST_CLOCK file)."""

    def __init__(self, now: float = T0) -> None:
        super().__init__()
        self.at = now

    def now(self) -> float:
        return self.at


def vm(name: str = "web", vm_id: str | None = None, **changes: Any) -> VmRecord:
    """A VM record as a plan makes it (``created``), with ``changes``."""
    record = VmRecord(
        id=vm_id or f"id-{name}",
        name=name,
        state=VmState.CREATED,
        image_id="f" * 64,
        image_name="debian-12",
        profile="micro",
        cpus=2,
        memory=4 * GIB,
        disk_size=10 * GIB,
        owner="alice",
    )
    return record.with_changes(**changes)


def open_store(
    path: Path, clock: Clock | None = None, observer: StoreObserver | None = None
) -> Store:
    return Store(Database(path), clock or SetClock(), observer)


def put(store: Store, record: VmRecord, state: VmState = VmState.CREATED) -> VmRecord:
    """Insert ``record`` and walk it to ``state`` through the transitions the daemon makes."""
    made = store.vms.insert(record)
    for step in PATHS[state]:
        made = store.vms.set_state(made.id, step)
    return made
