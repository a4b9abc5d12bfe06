"""The composition root: every service of the daemon built once, in order, each handed its
collaborators when it is made (Firecracker's ``builder.rs``), and the lifespan that runs
recovery and the background tasks.

Order matters and is the layering read bottom-up: state (database, clock, the
usage ledger that observes it) -> tenancy -> networks -> vms -> snapshots -> sandboxes,
telemetry, policies -> the API. Nothing sets a hook on an object after it is
made: what a lower service calls back (the project quota, the snapshot keeper
when a VM goes, the noisy watch on each sample) is passed to its constructor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI

from bungalow.daemon.accounting.ledger import UsageLedger
from bungalow.daemon.api.access import App
from bungalow.daemon.api.app import create_app
from bungalow.daemon.api.dashboard.app import dashboard_app
from bungalow.daemon.api.dashboard.auth import DashboardAuth
from bungalow.daemon.api.deps import Services
from bungalow.daemon.api.views import Views
from bungalow.daemon.images.service import Images
from bungalow.daemon.networks import watch as networks_watch
from bungalow.daemon.networks.kernel import Kernel
from bungalow.daemon.networks.service import NetworkService
from bungalow.daemon.policies.actions import PolicyActions
from bungalow.daemon.policies.idle import Idleness
from bungalow.daemon.policies.leases import Leases
from bungalow.daemon.policies.noisy import NoisyWatch
from bungalow.daemon.policies.reaper import Reaper
from bungalow.daemon.policies.restorable import Restorable
from bungalow.daemon.policies.sprawl import Sprawl
from bungalow.daemon.sandboxes.pool import Pool
from bungalow.daemon.sandboxes.service import Sandboxes
from bungalow.daemon.sandboxes.templates import Templates
from bungalow.daemon.server.config import Config
from bungalow.daemon.server.dashboard import DashboardListener
from bungalow.daemon.snapshots.keeper import SnapshotKeeper
from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.snapshots.recovery import SnapshotRecovery
from bungalow.daemon.snapshots.suspend import Suspender
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.db import Database
from bungalow.daemon.state.store import Store
from bungalow.daemon.state.usage import UsageTable
from bungalow.daemon.telemetry.metrics import Metrics
from bungalow.daemon.telemetry.ticks import SampleTicks
from bungalow.daemon.tenancy.projects import Projects
from bungalow.daemon.tenancy.sessions import Sessions, admin_token
from bungalow.daemon.vms.admission import Admission
from bungalow.daemon.vms.host import HostFacts
from bungalow.daemon.vms.manager import VmManager
from bungalow.daemon.vms.media import Media
from bungalow.daemon.vms.recovery import Recovery
from bungalow.host.cgroups import remove_empty_groups
from bungalow.images.store import ImageStore
from bungalow.paths import DataDir

log = logging.getLogger("bungalowd")


@dataclass(frozen=True)
class Daemon:
    """Everything the daemon is made of; :func:`build` makes one."""

    data: DataDir
    store: Store
    ledger: UsageLedger
    networks: NetworkService
    vms: VmManager
    keeper: SnapshotKeeper
    suspender: Suspender
    pool: Pool
    metrics: Metrics
    reaper: Reaper
    services: Services
    dashboard: DashboardListener


def build(data: DataDir, config: Config, host: HostFacts, clock: Clock | None = None) -> Daemon:
    """Make every service of a daemon for ``data``; opens (and migrates) its database."""
    clock = clock or Clock.from_environment()
    db = Database(data.database)
    ledger = UsageLedger(UsageTable(db), clock, config.rates, config.currency)
    store = Store(db, clock, observer=ledger)
    projects = Projects(store)
    networks = NetworkService(store, Kernel(data.root), clock)
    keeper = SnapshotKeeper(store, data)
    admission = Admission(store.vms, data.root, config.ratios, quota=projects.check)
    vms = VmManager(
        data=data, store=store, images=ImageStore(data.images), admission=admission,
        host=host, clock=clock, on_removed=keeper.vm_removed, networks=networks,
    )  # fmt: skip
    snapshots = Snapshots(vms, keeper)
    suspender = Suspender(snapshots)
    templates = Templates(snapshots)
    pool = Pool(snapshots, templates, config.sandbox_pool, config.sandbox_pool_idle)
    sandboxes = Sandboxes(snapshots, templates, pool)
    noisy = NoisyWatch(
        store, cpus=lambda: admission.capacity().cpus, hold=vms.hold_to, config=config.noisy
    )
    ticks = SampleTicks()
    metrics = Metrics(vms, listeners=(noisy.notice, ticks.notice))
    policy = config.policy
    restorable = Restorable(snapshots, suspender, clock)
    actions = PolicyActions(vms, suspender, restorable, policy.retention)
    leases = Leases(vms, actions, policy, clock)
    idleness = Idleness(vms, metrics.rates, actions, policy, clock)
    sprawl = Sprawl(store, leases, idleness, actions, policy, clock, ledger.price_of)
    reaper = Reaper(
        leases, idleness, restorable, clock, policy.reaper_interval,
        lapse_pools=pool.lapse, resume_held=vms.resume_held,
    )  # fmt: skip
    images = Images(vms.images, store.vms, keeper)
    sessions = Sessions(clock.now, config.dashboard.session_minutes * 60)
    token = admin_token(data.root)

    def dashboard(tls: bool) -> App:  # made when the listener first opens, over `services`
        auth = DashboardAuth(sessions, token, projects, config.dashboard.origins, secure=tls)
        return dashboard_app(services, auth, ticks)

    listener = DashboardListener(config.dashboard, data.root, dashboard)
    services = Services(
        vms=vms, snapshots=snapshots, suspender=suspender, sandboxes=sandboxes, images=images,
        projects=projects, networks=networks, ledger=ledger, metrics=metrics, noisy=noisy,
        leases=leases, idleness=idleness, sprawl=sprawl, restorable=restorable, events=store.events,
        views=Views(vms, ledger, images), media=Media(vms), dashboard=listener, sessions=sessions,
        dashboard_token=token, sandbox_timeout=config.sandbox_timeout,
    )  # fmt: skip
    return Daemon(
        data,
        store,
        ledger,
        networks,
        vms,
        keeper,
        suspender,
        pool,
        metrics,
        reaper,
        services,
        listener,
    )


async def recover(daemon: Daemon) -> None:
    """Account for whatever an earlier daemon left: the networks (bridges, dnsmasq, rules:
    VMs' NICs plug into them), snapshot work, then every VM and process (vms/recovery.py),
    dated at its last heartbeat; then the caches."""
    store = daemon.store
    await daemon.networks.adopt()
    with daemon.ledger.backdated():  # what changed while no daemon ran is dated at its last beat
        pairs = [(s, store.snapshots.charged_to(s)) for s in store.snapshots.list()]
        daemon.ledger.reconcile(store.vms.list(), pairs)
        await SnapshotRecovery(daemon.suspender).run()
        await Recovery(daemon.vms).run()
    await asyncio.to_thread(remove_empty_groups)
    await daemon.pool.drain()
    await daemon.keeper.collect()


def app_for(daemon: Daemon) -> FastAPI:
    """The API over ``daemon``, with a lifespan that recovers, runs the background tasks
    (reaper, metrics, heartbeat, the networks' watch) and lets go of every VM at the end
    (they outlive it)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await recover(daemon)
        tasks = [
            asyncio.create_task(daemon.reaper.run(), name="reaper"),
            asyncio.create_task(daemon.metrics.run(), name="metrics"),
            asyncio.create_task(daemon.ledger.run_heartbeat(), name="usage"),
            asyncio.create_task(networks_watch.run(daemon.networks), name="networks"),
        ]
        await daemon.dashboard.open_if_enabled()
        log.info("bungalowd ready on %s", daemon.data.socket)
        try:
            yield
        finally:
            await daemon.dashboard.close()
            await daemon.pool.close()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await daemon.vms.close()
            try:
                daemon.ledger.beat()
            except Exception as exc:  # a full disk: the last beat written stands
                log.warning("could not write the last usage heartbeat: %s", exc)
            daemon.store.close()

    return create_app(daemon.services, lifespan)
