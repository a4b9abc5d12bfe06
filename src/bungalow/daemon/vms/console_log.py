"""A VM's console log followed as QEMU writes it (``logs -f``, ``GET .../logs?follow=true``).

QEMU appends the guest's serial output to ``console.log`` in the VM's run directory;
following it means reading on from where the last read ended, every
:data:`FOLLOW_INTERVAL` seconds, until the VM has no QEMU to write more. The reads go
to a thread (the file is on disk, and may be large on the first one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import VmNotFoundError

#: How often a followed console log is looked at for new output, in seconds.
FOLLOW_INTERVAL = 0.2
#: The most of a console log read at once while following it, in bytes.
FOLLOW_CHUNK = 1 << 20
#: States in which the VM has no QEMU, so nothing more will be written to its console.
_NO_QEMU = frozenset({VmState.STOPPED, VmState.FAILED, VmState.SUSPENDED})


def qemu_may_write(vms: VmManager, name: str) -> bool:
    """Whether the VM ``name`` still has (or is about to have) a QEMU writing its console:
    False once it is stopped, failed, suspended or removed."""
    try:
        return vms.get(name).state not in _NO_QEMU
    except VmNotFoundError:
        return False


async def follow(path: Path, tail: int, *, name: str, vms: VmManager) -> AsyncIterator[bytes]:
    """The console log's last ``tail`` lines (all of it for 0), then its output as QEMU
    writes it, as raw bytes. It ends once the VM has no QEMU (:func:`qemu_may_write`),
    after the last output; a consumer that goes away ends it by closing the iterator."""
    whole = await asyncio.to_thread(_read_from, path, 0, None)
    offset = len(whole)
    if tail > 0:
        whole = b"".join(whole.splitlines(keepends=True)[-tail:])
    if whole:
        yield whole
    while True:
        ended = not qemu_may_write(vms, name)  # asked first: the reads below get its last output
        while chunk := await asyncio.to_thread(_read_from, path, offset, FOLLOW_CHUNK):
            offset += len(chunk)
            yield chunk
        if ended:
            return
        await asyncio.sleep(FOLLOW_INTERVAL)


def _read_from(path: Path, offset: int, most: int | None) -> bytes:
    """What ``path`` holds from ``offset`` on (at most ``most`` bytes); empty when it is gone."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read(most if most is not None else -1)
    except FileNotFoundError:
        return b""
