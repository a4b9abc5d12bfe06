"""The balloon of a running VM, over QMP: its size, a new target, the guest's memory stats.

QEMU's ``query-balloon`` answers ``actual``, the bytes the guest has now (its
memory less what the balloon holds); ``balloon`` sets a new target, which the
guest's virtio_balloon driver reaches by inflating or deflating in the
background. The guest's own figures (free, available, total) come from the
device's ``guest-stats`` property, updated every ``guest-stats-polling-interval``
seconds once that is set (docs/interop/virtio-balloon-stats.rst in QEMU).
"""

from __future__ import annotations

from dataclasses import dataclass

from bungalow.qemu.argv import BALLOON_ID
from bungalow.qemu.monitor import Monitor

#: The device as QOM names it (``-device ...,id=balloon0``).
BALLOON_PATH = f"/machine/peripheral/{BALLOON_ID}"
#: Seconds between the guest's stats updates, once asked for.
STATS_INTERVAL = 5


@dataclass(frozen=True)
class GuestMemory:
    """The guest's view of its memory in bytes (virtio-balloon stats); None when unknown."""

    total: int | None
    free: int | None
    available: int | None


async def actual(monitor: Monitor) -> int:
    """Bytes of memory the guest has now: its size less what the balloon holds."""
    result = await monitor.execute("query-balloon")
    return int(result["actual"]) if isinstance(result, dict) else 0


async def set_target(monitor: Monitor, target: int) -> None:
    """Ask the guest to inflate or deflate its balloon until it has ``target`` bytes."""
    await monitor.execute("balloon", {"value": target})


async def guest_memory(monitor: Monitor) -> GuestMemory:
    """The guest's last reported memory stats; asks for updates (every
    :data:`STATS_INTERVAL` s) the first time, so that call's answer may be all None."""
    interval = await monitor.execute(
        "qom-get", {"path": BALLOON_PATH, "property": "guest-stats-polling-interval"}
    )
    if not interval:
        await monitor.execute(
            "qom-set",
            {
                "path": BALLOON_PATH,
                "property": "guest-stats-polling-interval",
                "value": STATS_INTERVAL,
            },
        )
    result = await monitor.execute("qom-get", {"path": BALLOON_PATH, "property": "guest-stats"})
    stats = result.get("stats", {}) if isinstance(result, dict) else {}

    def stat(key: str) -> int | None:
        value = stats.get(key, -1)
        return int(value) if isinstance(value, int) and value >= 0 else None

    return GuestMemory(
        total=stat("stat-total-memory"),
        free=stat("stat-free-memory"),
        available=stat("stat-available-memory"),
    )
