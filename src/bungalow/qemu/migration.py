"""Saving and loading a running machine's state with QEMU's migration, over QMP.

Three moves make every snapshot and clone (see docs/architecture.md, "Snapshots"):

- :func:`send` streams one QEMU's whole state (RAM and devices) into another
  waiting with ``-incoming defer``, over a socket pair;
- :func:`save` writes a paused QEMU's state to a file; with ``ignore_shared``
  the RAM held in a shared memory file is left out, so only the devices are
  written (about 0.1-0.3 MB);
- :func:`load` feeds such a file to a QEMU waiting with ``-incoming defer``.

Files travel as descriptors passed over the QMP socket, so QEMU opens no path
(and a seccomp-sandboxed QEMU spawns no helper process).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

from bungalow.errors import QemuError
from bungalow.qemu.monitor import Monitor

#: A local copy is bounded by memory speed, not by QEMU's 128 MiB/s default.
BANDWIDTH = 64 << 30
POLL = 0.005


async def set_ignore_shared(monitor: Monitor, on: bool = True) -> None:
    """Leave RAM that lives in a shared file out of the stream (``x-ignore-shared``)."""
    await _capabilities(monitor, {"x-ignore-shared": on})


async def send(source: Monitor, target: Monitor, timeout: float) -> None:
    """Move ``source``'s state into ``target`` (started with ``-incoming defer``).

    ``target`` takes the disks over when the stream ends; it must save or quit
    before the source continues (``cont`` takes them back). Every page goes:
    a source that was itself loaded with ``x-ignore-shared`` still has it set.
    The two ends of a socket pair are handed to them, so neither opens a path.
    """
    await set_ignore_shared(source, False)
    outgoing, incoming = socket.socketpair()
    with outgoing, incoming:
        await target.pass_fd(incoming.fileno(), "bungalow-receive")
        await source.pass_fd(outgoing.fileno(), "bungalow-send")
    await target.execute("migrate-incoming", {"uri": "fd:bungalow-receive"})
    await source.execute("migrate-set-parameters", {"max-bandwidth": BANDWIDTH})
    await source.execute("migrate", {"uri": "fd:bungalow-send"})
    await wait_done(source, timeout, "sending the VM's memory")
    await wait_loaded(target, timeout)


async def save(monitor: Monitor, path: Path, timeout: float) -> None:
    """Write the (paused) VM's state to ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        await monitor.pass_fd(fd, "bungalow-save")
    finally:
        os.close(fd)
    await monitor.execute("migrate-set-parameters", {"max-bandwidth": BANDWIDTH})
    await monitor.execute("migrate", {"uri": "fd:bungalow-save"})
    await wait_done(monitor, timeout, "saving the VM's state")


async def load(monitor: Monitor, path: Path, timeout: float) -> None:
    """Load ``path`` into a QEMU started with ``-incoming defer``; it stays paused."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        await monitor.pass_fd(fd, "bungalow-load")
    finally:
        os.close(fd)
    await monitor.execute("migrate-incoming", {"uri": "fd:bungalow-load"})
    await wait_loaded(monitor, timeout)


async def wait_done(monitor: Monitor, timeout: float, what: str) -> dict[str, Any]:
    """Wait for an outgoing migration to complete; its failure becomes a QemuError."""
    deadline = time.monotonic() + timeout
    while True:
        info = await monitor.execute("query-migrate")
        status = info.get("status") if isinstance(info, dict) else None
        if status == "completed":
            assert isinstance(info, dict)
            return info
        if status in ("failed", "cancelled"):
            detail = info.get("error-desc", "no reason given") if isinstance(info, dict) else ""
            raise QemuError(f"QEMU failed {what}: {detail}.")
        if time.monotonic() > deadline:
            await monitor.execute("migrate_cancel")
            raise QemuError(f"QEMU did not finish {what} within {timeout:g} s; it was cancelled.")
        await asyncio.sleep(POLL)


async def wait_loaded(monitor: Monitor, timeout: float) -> None:
    """Wait until an incoming migration has been loaded (the VM is then paused)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await monitor.status()
        if status != "inmigrate":
            if status not in ("paused", "postmigrate", "prelaunch", "running"):
                raise QemuError(f"QEMU could not load the VM's state (it is now {status}).")
            return
        if time.monotonic() > deadline:
            raise QemuError(f"QEMU did not load the VM's state within {timeout:g} s.")
        await asyncio.sleep(POLL)


async def _capabilities(monitor: Monitor, capabilities: dict[str, bool]) -> None:
    states = [{"capability": name, "state": on} for name, on in capabilities.items()]
    await monitor.execute("migrate-set-capabilities", {"capabilities": states})


#: query-migrate statuses of a migration still under way.
_UNDER_WAY = frozenset(
    {"setup", "active", "pre-switchover", "device", "wait-unplug", "cancelling",
     "postcopy-active", "postcopy-paused", "postcopy-recover"}
)  # fmt: skip


async def settle(monitor: Monitor, timeout: float = 30.0) -> str:
    """End an outgoing migration someone else started (a snapshot a killed daemon was
    taking): cancel it if it is under way and wait until it has stopped. Returns the
    VM's run state afterwards (``paused``, ``postmigrate``, ``running``...).

    A source whose migration completed keeps its disks inactive until ``cont``;
    one whose migration failed or was cancelled is paused or running as before.
    """
    deadline = time.monotonic() + timeout
    cancelled = False
    while True:
        info = await monitor.execute("query-migrate")
        status = info.get("status") if isinstance(info, dict) else None
        if status not in _UNDER_WAY:
            return await monitor.status()
        if not cancelled:
            await monitor.execute("migrate_cancel")
            cancelled = True
        if time.monotonic() > deadline:
            raise QemuError(f"QEMU did not end its migration within {timeout:g} s.")
        await asyncio.sleep(POLL * 4)
