"""The networks' watch: what dies or is deleted under a running daemon is put back.

A dnsmasq killed, or a bridge deleted by hand (``ip link del``), would otherwise stay
gone until the next network change or daemon restart: the VMs on it would lose DHCP,
their names and each other. Every ``PERIOD`` seconds each network's bridge and dnsmasq
are looked at (a read of /sys and of dnsmasq's pidfile, through the /proc census);
only a network that lost one is served again (``Kernel.serve``, the same idempotent
step a restart takes), its running VMs' TAPs put back on its bridge, and the rules
applied again, with a warning in the daemon's log.
"""

from __future__ import annotations

import asyncio
import logging

from bungalow.daemon.networks.service import NetworkService

log = logging.getLogger(__name__)

#: Seconds between two looks.
PERIOD = 5.0


async def run(service: NetworkService, period: float = PERIOD) -> None:
    """Look every ``period`` seconds until cancelled; a failed look is logged, not fatal."""
    while True:
        await asyncio.sleep(period)
        try:
            repaired = await service.repair()
        except Exception:  # the watch serves on; the next look tries again
            log.exception("the networks' watch failed")
            continue
        for name in repaired:
            log.warning("network %s had lost its bridge or dnsmasq; both are back", name)
