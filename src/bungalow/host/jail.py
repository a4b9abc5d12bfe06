"""An unprivileged user of its own for every QEMU the daemon starts.

QEMU opens everything it needs (disk, kernel, memory file, sockets, logs) as
root while it sets up, then changes root to the VM's run directory and drops
to a user id nobody else has (``-chroot``, ``-runas UID:GID``). From then on a
QEMU taken over by its guest holds descriptors for its own files and can open
nothing: the run directory is root's and mode 0700, and so is the data
directory with the other VMs' disks, the snapshots and the daemon's socket.

The ids come from a range no distribution hands out (:data:`UID_BASE`), with
no passwd entry, as systemd's dynamic users do. An id is free when no process
runs under it and it was not handed out in the last :data:`RESERVE_SECONDS`
(a QEMU still setting up runs as root).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

UID_BASE = 1_900_000_000
UID_COUNT = 1_000_000
RESERVE_SECONDS = 120.0

_lock = threading.Lock()
_handed_out: dict[int, float] = {}


@dataclass(frozen=True)
class Identity:
    """Who a confined process becomes: its own user and group."""

    uid: int
    gid: int


def available() -> bool:
    """Only root can give a process another user; otherwise QEMU runs as the daemon's user."""
    return os.geteuid() == 0


def allocate() -> Identity:
    """A user and group id no running process has and no recent caller was given."""
    with _lock:
        now = time.monotonic()
        for uid, when in list(_handed_out.items()):
            if now - when > RESERVE_SECONDS:
                del _handed_out[uid]
        taken = ids_in_use() | set(_handed_out)
        for uid in range(UID_BASE + 1, UID_BASE + UID_COUNT):
            if uid not in taken:
                _handed_out[uid] = now
                return Identity(uid=uid, gid=uid)
    raise RuntimeError("every confinement user id is in use")


def ids_in_use() -> set[int]:
    """The real user ids in the confinement range of every process on the host."""
    used: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
        except OSError:
            continue
        if is_confined_id(uid):
            used.add(uid)
    return used


def is_confined_id(uid: int) -> bool:
    return UID_BASE < uid < UID_BASE + UID_COUNT
