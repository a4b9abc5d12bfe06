"""The database schema and every change made to it, in order, in one place.

``PRAGMA user_version`` holds how many of :data:`MIGRATIONS` a database has
had; opening it runs the rest, each in its own transaction. A migration is
never edited once released: a change is a new migration at the end.

Migration 1 is the schema as it stood when versioning began. Databases made
before that have tables but a ``user_version`` of 0; it creates what they
lack and adds the columns that older daemons added one by one with ``ALTER``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

_BASELINE = """
CREATE TABLE IF NOT EXISTS vms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    image_id TEXT NOT NULL,
    image_name TEXT NOT NULL,
    profile TEXT NOT NULL,
    cpus INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    disk_size INTEGER NOT NULL,
    ports TEXT NOT NULL,
    accel TEXT NOT NULL,
    mac TEXT NOT NULL,
    pid INTEGER,
    created REAL NOT NULL,
    started REAL,
    error TEXT,
    machine_id TEXT NOT NULL DEFAULT '',
    cmdline TEXT,
    base_snapshot TEXT,
    parent TEXT,
    sandbox INTEGER NOT NULL DEFAULT 0,
    expires_at REAL,
    on_expiry TEXT NOT NULL DEFAULT 'delete',
    pool TEXT,
    limits TEXT NOT NULL DEFAULT '{}',
    project TEXT,
    owner TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    created_by TEXT NOT NULL DEFAULT '',
    origin TEXT NOT NULL DEFAULT '',
    idle TEXT NOT NULL DEFAULT '{}',
    last_active REAL,
    lease_warned REAL
);
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    max_vcpus INTEGER,
    max_memory INTEGER,
    max_disk INTEGER,
    max_vms INTEGER,
    created REAL NOT NULL,
    idle TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    vm_id TEXT,
    vm_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    purpose TEXT NOT NULL,
    created REAL NOT NULL,
    image_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    cpus INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    disk_size INTEGER NOT NULL,
    accel TEXT NOT NULL,
    qemu TEXT NOT NULL,
    cmdline TEXT,
    base_snapshot TEXT,
    digests TEXT NOT NULL,
    size INTEGER NOT NULL,
    template_key TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS snapshot_names ON snapshots (vm_id, name);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    vm TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    project TEXT
);
CREATE TABLE IF NOT EXISTS deleted_vms (
    snapshot TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    project TEXT,
    deleted REAL NOT NULL,
    keep_until REAL NOT NULL,
    record TEXT NOT NULL
);
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

#: Columns that daemons before versioning added with ALTER, as they first appeared.
_LEGACY_COLUMNS = {
    "vms": {
        "machine_id": "TEXT NOT NULL DEFAULT ''",
        "cmdline": "TEXT",
        "base_snapshot": "TEXT",
        "parent": "TEXT",
        "sandbox": "INTEGER NOT NULL DEFAULT 0",
        "expires_at": "REAL",
        "on_expiry": "TEXT NOT NULL DEFAULT 'delete'",
        "pool": "TEXT",
        "limits": "TEXT NOT NULL DEFAULT '{}'",
        "project": "TEXT",
        "owner": "TEXT",
        "labels": "TEXT NOT NULL DEFAULT '{}'",
        "created_by": "TEXT NOT NULL DEFAULT ''",
        "origin": "TEXT NOT NULL DEFAULT ''",
        "idle": "TEXT NOT NULL DEFAULT '{}'",
        "last_active": "REAL",
        "lease_warned": "REAL",
    },
    "events": {
        "actor": "TEXT NOT NULL DEFAULT ''",
        "reason": "TEXT NOT NULL DEFAULT ''",
        "project": "TEXT",
    },
    "projects": {"idle": "TEXT NOT NULL DEFAULT '{}'"},
}


def _baseline(db: sqlite3.Connection) -> None:
    for statement in _BASELINE.split(";"):
        if statement.strip():
            db.execute(statement)
    for table, columns in _LEGACY_COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column, definition in columns.items():
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def _operations_and_subjects(db: sqlite3.Connection) -> None:
    """The operation under way on a VM (crash recovery), and what an event is about."""
    db.execute("ALTER TABLE vms ADD COLUMN operation TEXT")
    db.execute("ALTER TABLE events ADD COLUMN subject TEXT")
    db.execute("CREATE INDEX events_vm ON events (vm)")
    db.execute("CREATE INDEX events_kind ON events (kind, subject)")
    # Project events named their project only in the message before subjects existed.
    db.execute(
        "UPDATE events SET kind = 'project-removed', subject = substr(message, 9, "
        "length(message) - 16) WHERE kind = 'project' AND message LIKE 'project % removed'"
    )


def _networks(db: sqlite3.Connection) -> None:
    """Private networks and the NICs VMs have on them (daemon/networks/)."""
    db.execute(
        """CREATE TABLE networks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            subnet TEXT NOT NULL,
            gateway TEXT NOT NULL,
            bridge TEXT NOT NULL,
            domain TEXT NOT NULL,
            created REAL NOT NULL,
            operation TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE nics (
            vm_id TEXT NOT NULL,
            network_id INTEGER NOT NULL REFERENCES networks (id),
            "index" INTEGER NOT NULL,
            mac TEXT NOT NULL UNIQUE,
            address TEXT NOT NULL,
            hostname TEXT NOT NULL,
            PRIMARY KEY (vm_id, network_id),
            UNIQUE (network_id, address)
        )"""
    )


def _snapshot_networks(db: sqlite3.Connection) -> None:
    """The networks a snapshot's VM had NICs on, in NIC order: a clone goes on the same
    ones, and a saved machine state carries those NICs as devices."""
    db.execute("ALTER TABLE snapshots ADD COLUMN networks TEXT NOT NULL DEFAULT '[]'")


def _provisioning(db: sqlite3.Connection) -> None:
    """What a VM is provisioned with: cloud-init user-data (its NoCloud seed is made from
    it, for the VM and each of its clones) and SSH public keys (the agent installs them)."""
    db.execute("ALTER TABLE vms ADD COLUMN user_data TEXT")
    db.execute("ALTER TABLE vms ADD COLUMN ssh_keys TEXT NOT NULL DEFAULT '[]'")


def _media(db: sqlite3.Connection) -> None:
    """The medium in a VM's CD-ROM drive: the id of an ``iso`` image, NULL when the tray
    is empty (or the VM has no drive)."""
    db.execute("ALTER TABLE vms ADD COLUMN media TEXT")


def _firmware_and_tpm(db: sqlite3.Connection) -> None:
    """A VM's firmware (bios, uefi, uefi-secure) and TPM, and those of a snapshot's VM."""
    for table in ("vms", "snapshots"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN firmware TEXT NOT NULL DEFAULT 'bios'")
        db.execute(f"ALTER TABLE {table} ADD COLUMN tpm INTEGER NOT NULL DEFAULT 0")


def _snapshot_media(db: sqlite3.Connection) -> None:
    """The medium in a snapshot's VM's CD-ROM drive (an ``iso`` image's id, NULL: none), which
    a restore puts back and a clone gets. Older snapshots keep NULL: what their VM's drive
    held when they were taken was not recorded."""
    db.execute("ALTER TABLE snapshots ADD COLUMN media TEXT")


def _memory_min(db: sqlite3.Connection) -> None:
    """A VM's balloon floor in bytes (``--memory-min``); NULL: no floor, never ballooned."""
    db.execute("ALTER TABLE vms ADD COLUMN memory_min INTEGER")


#: Every migration, oldest first; the database's ``user_version`` counts those it has had.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _baseline,
    _operations_and_subjects,
    _networks,
    _snapshot_networks,
    _provisioning,
    _media,
    _firmware_and_tpm,
    _snapshot_media,
    _memory_min,
)
