"""A VM's network limit: its shaper started with QEMU, re-rated live, watched, and ended.

Only a VM that has a network limit when its QEMU starts gets a shaper (its NIC
then reaches the user-mode network through it, see ``qemu/argv.py``); the
others pay nothing. A limit set on a VM that runs without one is recorded and
applies from its next start, which :func:`pending` tells the user. A shaper
that dies while its VM runs is replaced (QEMU takes the new connection), and a
daemon that restarts finds the running ones again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from bungalow.daemon.state.lifecycle import ACTIVE_STATES
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.state.store import Store
from bungalow.daemon.vms.limits import Limits
from bungalow.daemon.vms.runtime import VmRuntime
from bungalow.errors import BungalowError
from bungalow.host.shaping import set_shaper_rate, shaper_pid, start_shaper, stop_shaper
from bungalow.qemu.argv import RunFiles
from bungalow.qemu.process import pid_alive, wait_exit

log = logging.getLogger(__name__)

#: Shapers started again for one QEMU before the daemon gives up on its network.
MAX_RESTARTS = 3
#: A shaper ends as soon as its QEMU closes the sockets, a moment before QEMU is gone.
SETTLE = 0.5

#: Records an event about a VM: (kind, message).
Event = Callable[[str, str], None]


def net_bw(vm: VmRecord) -> int | None:
    return Limits.from_json(vm.limits).net_bw


def relayed(run_dir: Path) -> bool:
    """Whether the QEMU of ``run_dir`` was started with its NIC behind a relay."""
    return RunFiles(run_dir.absolute()).net_nic.exists()


async def start(run_dir: Path, rate: int | None) -> int:
    """Start the shaper between the sockets QEMU listens on; its PID."""
    files = RunFiles(run_dir.absolute())
    return await asyncio.to_thread(start_shaper, files.run_dir, files.net_nic, files.net_wan, rate)


def stop(run_dir: Path) -> None:
    """End the shaper (if any) and remove its files and QEMU's relay sockets."""
    stop_shaper(run_dir)
    files = RunFiles(run_dir.absolute())
    for path in (files.net_nic, files.net_wan):
        path.unlink(missing_ok=True)


def apply(run_dir: Path, rate: int | None) -> bool:
    """Give a running shaper ``rate`` at once; False when this QEMU has no shaper."""
    if not relayed(run_dir):
        return False
    return set_shaper_rate(run_dir, rate)


def pending(vm: VmRecord, run_dir: Path) -> list[str]:
    """Limits recorded that the VM's running QEMU cannot enforce until its next start."""
    if vm.state in ACTIVE_STATES and net_bw(vm) is not None and not relayed(run_dir):
        return ["net_bw"]
    return []


async def reattach(vm: VmRecord, run_dir: Path, event: Event) -> None:
    """After a daemon restart: the running shaper gets the recorded rate, a dead one a successor."""
    if not relayed(run_dir):
        return
    if apply(run_dir, net_bw(vm)):
        return
    try:
        await start(run_dir, net_bw(vm))
    except BungalowError as exc:
        event("net-shaper", f"the network shaper had exited and could not start again: {exc}")
        return
    event("net-shaper", "the network shaper had exited while bungalowd was away; started anew")


async def watch(runtime: VmRuntime, rate: Callable[[], int | None], event: Event) -> None:
    """Collect the shaper when it exits; if its QEMU still runs, start another.

    Runs as long as the runtime; the daemon cancels it when it lets the VM go.
    """
    run_dir = runtime.run_dir
    restarts = 0
    while (pid := shaper_pid(run_dir)) is not None:
        await wait_exit(pid)
        await asyncio.sleep(SETTLE)
        if runtime.expected_exit or not pid_alive(runtime.pid, run_dir):
            return
        if restarts == MAX_RESTARTS:
            event("net-shaper", "the network shaper keeps exiting; the VM has no network until "
                  "it is restarted")  # fmt: skip
            return
        restarts += 1
        try:
            await start(run_dir, rate())
        except BungalowError as exc:
            event("net-shaper", f"the network shaper exited and could not start again: {exc}")
            return
        log.warning("network shaper of %s exited; started anew", run_dir)
        event("net-shaper", "the network shaper exited; started anew")


def supervise(name: str, runtime: VmRuntime, store: Store) -> None:
    """Watch the shaper of the VM ``name`` (if its QEMU has one) for as long as ``runtime``."""
    if not relayed(runtime.run_dir):
        return

    def rate() -> int | None:
        vm = store.vms.find(name)
        return None if vm is None else net_bw(vm)

    def event(kind: str, message: str) -> None:
        store.events.add(name, kind, message)

    runtime.shaper_watcher = asyncio.create_task(watch(runtime, rate, event))
