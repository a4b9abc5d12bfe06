"""The daemon's state in one object: its tables over one SQLite database.

:class:`Store` is what the daemon's services are given. It holds the VM and
snapshot tables (whose writes the usage ledger observes), the audit log, the
projects, the deleted VMs, the networks and their NICs; nothing outside the state
package runs SQL or sees the connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from bungalow.daemon.state.audit import EventLog
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.db import Database
from bungalow.daemon.state.deleted import DeletedTable
from bungalow.daemon.state.networks import NetworkTable, NicTable
from bungalow.daemon.state.projects import ProjectTable
from bungalow.daemon.state.snapshots import SnapshotObserver, SnapshotTable
from bungalow.daemon.state.vms import VmObserver, VmTable


class StoreObserver(VmObserver, SnapshotObserver, Protocol):
    """Told of every VM and snapshot row written or deleted (the usage ledger)."""


class Store:
    def __init__(
        self, db: Database, clock: Clock | None = None, observer: StoreObserver | None = None
    ) -> None:
        #: Event times are read through the daemon's clock, like every policy date.
        self.clock = clock or Clock()
        self._db = db
        self.vms = VmTable(db, observer)
        self.snapshots = SnapshotTable(db, self.vms, observer)
        self.events = EventLog(db, self.clock)
        self.projects = ProjectTable(db)
        self.deleted = DeletedTable(db)
        self.networks = NetworkTable(db)
        self.nics = NicTable(db)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside commit together or not at all."""
        with self._db.transaction():
            yield

    def close(self) -> None:
        self._db.close()
