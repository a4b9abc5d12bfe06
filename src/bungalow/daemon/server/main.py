"""``bungalowd``: one daemon per data directory, serving the API on an owner-only socket.

Start-up order matters: take the data directory's lock (a second daemon exits
quietly), open the database, reattach to every QEMU that outlived the previous
daemon, and only then bind the socket, so a client never sees a half-ready daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from bungalow.daemon.accounting.ledger import UsageLedger
from bungalow.daemon.api.access import ProjectScope
from bungalow.daemon.api.costs import router as costs_router
from bungalow.daemon.api.leases import router as leases_router
from bungalow.daemon.api.metrics import router as metrics_router
from bungalow.daemon.api.projects import router as projects_router
from bungalow.daemon.api.sprawl import router as sprawl_router
from bungalow.daemon.api.vms import create_app
from bungalow.daemon.policies.noisy import NoisyWatch
from bungalow.daemon.sandboxes.templates import Sandboxes
from bungalow.daemon.server.config import Config, load_config
from bungalow.daemon.server.wiring_policies import build_policies
from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.store import Store
from bungalow.daemon.telemetry.metrics import Metrics
from bungalow.daemon.tenancy.projects import Projects
from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import UserError
from bungalow.host.cgroups import remove_empty_groups
from bungalow.images.store import ImageStore
from bungalow.paths import DataDir
from bungalow.qemu.process import become_subreaper

log = logging.getLogger("bungalowd")


def _take_lock(data: DataDir) -> int | None:
    """The data directory's lock, held for the daemon's life; None if another daemon has it."""
    fd = os.open(data.root / "bungalowd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.set_inheritable(fd, False)
    return fd


def _owner_only_socket(path: Path) -> socket.socket:
    """Bind the API socket ourselves: uvicorn would make a path socket world-writable."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask is changed only around bind, before any thread exists: the daemon
    # also builds images, whose files must keep ordinary permissions.
    previous = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    listener.listen(128)
    return listener


def build_app(data: DataDir, config: Config | None = None) -> FastAPI:
    clock = Clock.from_environment()
    store = Store(data.database, clock)
    config = config or load_config(data.config)
    manager = VmManager(
        data=data, store=store, images=ImageStore(data.images), ratios=config.ratios, clock=clock
    )
    usage = UsageLedger(store, clock, config.rates, config.currency)
    store.observer = manager.usage = usage
    snapshots = Snapshots(manager)
    sandboxes = Sandboxes(manager, snapshots, config)
    projects = Projects(store)
    manager.quota_check = lambda vm, starting: projects.check(vm, starting=starting)
    app = create_app(manager, snapshots, sandboxes)
    app.state.projects = projects
    app.include_router(projects_router)
    app.add_middleware(ProjectScope, projects=projects)
    metrics = Metrics(manager, NoisyWatch(manager, config.noisy))
    app.state.metrics = metrics
    app.include_router(metrics_router)
    app.state.usage = usage
    app.include_router(costs_router)
    policies = build_policies(snapshots, metrics, config.policy, price=usage.price_of)
    app.state.policies = policies
    app.include_router(leases_router)
    app.include_router(sprawl_router)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Leftover converters first: one may hold the disk of a VM it was saving.
        await snapshots.sweep()
        with usage.backdated():  # what changed while no daemon ran is dated at its last beat
            usage.reconcile()
            await manager.reattach()
        await asyncio.to_thread(remove_empty_groups)
        await sandboxes.drain_pools()
        await snapshots.collect()
        reaper = asyncio.create_task(policies.reaper.run(), name="reaper")
        sampler = asyncio.create_task(metrics.run(), name="metrics")
        heartbeat = asyncio.create_task(usage.run_heartbeat(), name="usage")
        log.info("bungalowd ready on %s", data.socket)
        yield
        for task in (reaper, sampler, heartbeat):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await manager.close()
        usage.beat()
        store.close()

    app.router.lifespan_context = lifespan
    return app


def serve(data: DataDir) -> int:
    data.ensure()
    lock = _take_lock(data)
    if lock is None:
        print(f"bungalowd is already running for {data.root}.", file=sys.stderr)
        return 0
    logging.basicConfig(
        filename=data.daemon_log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("qemu.qmp", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_config(data.config)
    except UserError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    become_subreaper()
    data.daemon_pidfile.write_text(f"{os.getpid()}\n")
    listener = _owner_only_socket(data.socket)
    config = uvicorn.Config(
        build_app(data, settings),
        fd=listener.fileno(),
        log_level="warning",
        log_config=None,
        timeout_graceful_shutdown=3,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        with contextlib.suppress(FileNotFoundError):
            data.socket.unlink()
        with contextlib.suppress(FileNotFoundError):
            data.daemon_pidfile.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bungalowd", description=__doc__)
    parser.add_argument("--home", type=Path, help="data directory (default: $BUNGALOW_HOME)")
    args = parser.parse_args(argv)
    data = DataDir(args.home.absolute()) if args.home else DataDir.from_env()
    return serve(data)


if __name__ == "__main__":
    sys.exit(main())
