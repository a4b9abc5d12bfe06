"""A VM's screen and keyboard over QMP: screendump, send-key, the VNC password.

The display itself is on the QEMU command line (``argv._display_args``: VGA and VNC
on a Unix socket, password required); these are the QMP commands that use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence

from bungalow.errors import QemuError
from bungalow.qemu.keys import GAP_MS, HOLD_MS, Combo
from bungalow.qemu.monitor import Monitor

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The longest password VNC authentication can use: its DES key is 8 bytes (RFC 6143 7.2.2).
VNC_PASSWORD_LENGTH = 8


async def screendump(monitor: Monitor) -> bytes:
    """What the display shows now, as PNG bytes (QEMU encodes it: Debian's build has libpng).

    QEMU writes into a memory file the daemon passes it (an fd set opened write-only,
    as ``screendump`` opens its file), so a QEMU confined to its run directory as
    another user needs no path there, and no file is left behind. QemuError when
    QEMU refuses (no display) or writes something that is not a PNG.
    """
    memfd = os.memfd_create("bungalow-screendump", os.MFD_CLOEXEC)
    try:
        writer = os.open(f"/proc/self/fd/{memfd}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            fdset = await monitor.add_fd(writer)
        finally:
            os.close(writer)
        try:
            await monitor.execute(
                "screendump", {"filename": f"/dev/fdset/{fdset}", "format": "png"}
            )
        finally:
            with contextlib.suppress(QemuError):
                await monitor.remove_fd(fdset)
        data = await asyncio.to_thread(_read_all, memfd)
    finally:
        os.close(memfd)
    if not data.startswith(PNG_MAGIC):
        raise QemuError(f"QEMU's screendump wrote {len(data)} bytes that are not a PNG.")
    return data


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0)


async def send_combos(monitor: Monitor, combos: Sequence[Combo]) -> None:
    """Press each combination in turn (its keys down in order, held :data:`HOLD_MS`, released
    together), waiting for QEMU to release one before the next (``send-key`` answers at
    once and queues the release), plus :data:`GAP_MS`."""
    for combo in combos:
        keys = [{"type": "qcode", "data": key} for key in combo]
        await monitor.execute("send-key", {"keys": keys, "hold-time": HOLD_MS})
        await asyncio.sleep((HOLD_MS + GAP_MS) / 1000)


async def set_vnc_password(monitor: Monitor, password: str, expires_in: int) -> None:
    """Let VNC clients in with ``password`` for ``expires_in`` seconds from now (QEMU checks
    the expiry when a client authenticates; one already in stays)."""
    await monitor.execute("set_password", {"protocol": "vnc", "password": password})
    await monitor.execute("expire_password", {"protocol": "vnc", "time": f"+{expires_in}"})


async def expire_vnc_password(monitor: Monitor) -> None:
    """No new VNC client gets in from now on, whatever password it has."""
    await monitor.execute("expire_password", {"protocol": "vnc", "time": "now"})
