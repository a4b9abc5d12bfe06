"""A guest that QEMU holds paused because a write to its disk failed: mostly, the host's
disk is full.

QEMU's default for a disk write that fails with ENOSPC is to stop the guest
(``werror=enospc``) rather than hand the error to it, so nothing in the guest
breaks: the write is retried when the VM continues. QEMU says so with a
``BLOCK_IO_ERROR`` event (``nospace``) and a ``STOP``; runtime.py follows the
events, and the VM service (manager.py) records the VM ``paused`` with the
sentence :func:`held_reason` gives as its ``error``, ends the commands and
file copies under way with it (their callers would wait unanswered while the
VM is held; the agent ends them once the VM runs again), refuses new ones with
it, and continues the VM on ``resume`` only once the file system
has :data:`ROOM_TO_RESUME` free: with less, QEMU would stop it again at once.
The reaper continues such VMs by itself once the room is back (policies/reaper.py).

The daemon's database lies on the same file system, and SQLite cannot commit
on a full disk, so the daemon keeps :data:`RESERVE_SIZE` of it aside in a
file of its own (:class:`Reserve`): released when a VM is held for a full
disk, so that the pause, its reason and the events can be written, and taken
again once there is room.
"""

from __future__ import annotations

import os
from pathlib import Path

from bungalow.errors import InvalidStateError
from bungalow.units import format_size

#: Bytes that must be free on the file system of a VM's disk before a VM held by a full
#: disk is continued: 1024 of QEMU's 64 KiB qcow2 clusters, so the guest's retried
#: writes and a few seconds more land without stopping it again.
ROOM_TO_RESUME = 64 << 20
#: What :attr:`VmRuntime.io_error` holds when the host's file system was full.
NOSPACE = "nospace"
#: Bytes kept aside for the daemon's own writes: four times what SQLite's write-ahead log
#: grows to between checkpoints (1000 pages of 4 KiB), for the commits and a checkpoint.
RESERVE_SIZE = 16 << 20


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``path``."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def has_room(path: Path) -> bool:
    """Whether the file system of ``path`` has :data:`ROOM_TO_RESUME` free (statvfs)."""
    return free_bytes(path) >= ROOM_TO_RESUME


def held_reason(name: str, error: str, where: Path) -> str:
    """Why QEMU holds the VM ``name`` paused, and what to do: the VM's ``error``.

    ``error`` is :data:`NOSPACE` or the error QEMU named; ``where`` the data
    directory the VM's disk is in.
    """
    if error == NOSPACE:
        return (
            f"the host's disk is full (no space left under {where} for its disk), so QEMU "
            f"paused it; free space there and it resumes by itself, or run "
            f"`bungalow resume {name}`"
        )
    return (
        f"a write to its disk failed ({error}), so QEMU paused it; see `bungalow logs {name}`, "
        f"then run `bungalow resume {name}`"
    )


def check_room(name: str, where: Path) -> None:
    """InvalidStateError (409: the VM stays held; a full disk is no fault of bungalow's) with
    a sentence unless the file system of ``where`` has room to resume."""
    free = free_bytes(where)
    if free < ROOM_TO_RESUME:
        raise InvalidStateError(
            f"The host's disk is still full: {format_size(free) if free else 'nothing'} free "
            f"under {where}, and the VM {name} needs at least {format_size(ROOM_TO_RESUME)} "
            f"to carry on; free space there, then run `bungalow resume {name}` again."
        )


class Reserve:
    """:data:`RESERVE_SIZE` bytes of the data directory's file system, allocated to the file
    ``path`` while there is room, and given back when the disk is full. Blocks: call its
    methods in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def keep(self) -> None:
        """Allocate the reserve unless it is there; on a disk without room for it, nothing."""
        try:
            if self.path.stat().st_blocks * 512 >= RESERVE_SIZE:
                return
        except FileNotFoundError:
            pass
        if free_bytes(self.path.parent) < ROOM_TO_RESUME + RESERVE_SIZE:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_SIZE)
        except OSError:
            self.path.unlink(missing_ok=True)  # taken meanwhile: tried again later
        finally:
            os.close(fd)

    def release(self) -> bool:
        """Give the reserve back to the file system; whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
