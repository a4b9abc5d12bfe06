"""What the routes are given: the daemon's services, and who is asking.

The composition root (server/wiring.py) builds one :class:`Services` and puts
it on the app; every route reaches what it needs through the ``Annotated``
dependencies below, for HTTP requests and websockets alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Protocol, cast

from fastapi import Depends
from starlette.requests import HTTPConnection

from bungalow.daemon.accounting.ledger import UsageLedger
from bungalow.daemon.api.access import caller_project
from bungalow.daemon.api.views import Views
from bungalow.daemon.images.service import Images
from bungalow.daemon.networks.service import NetworkService
from bungalow.daemon.policies.idle import Idleness
from bungalow.daemon.policies.leases import Leases
from bungalow.daemon.policies.noisy import NoisyWatch
from bungalow.daemon.policies.restorable import Restorable
from bungalow.daemon.policies.sprawl import Sprawl
from bungalow.daemon.sandboxes.service import Sandboxes
from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.snapshots.suspend import Suspender
from bungalow.daemon.state.audit import EventLog
from bungalow.daemon.telemetry.metrics import Metrics
from bungalow.daemon.tenancy.projects import Projects
from bungalow.daemon.tenancy.sessions import Sessions
from bungalow.daemon.vms.manager import VmManager
from bungalow.daemon.vms.media import Media


class DashboardDoor(Protocol):
    """The dashboard's listener, as the API sees it (server/dashboard.py has it)."""

    async def open(self) -> tuple[str, str | None]:
        """Listen if not yet; the base URL (``http://127.0.0.1:8250``) and the SHA-256
        fingerprint of its TLS certificate (None without TLS). UserError with a sentence
        if it cannot listen (the port is taken)."""
        ...


@dataclass(frozen=True)
class Services:
    """Every service a route may call, built once by the composition root."""

    vms: VmManager
    snapshots: Snapshots
    suspender: Suspender
    sandboxes: Sandboxes
    images: Images
    projects: Projects
    networks: NetworkService
    ledger: UsageLedger
    metrics: Metrics
    noisy: NoisyWatch
    leases: Leases
    idleness: Idleness
    sprawl: Sprawl
    restorable: Restorable
    events: EventLog
    views: Views
    media: Media
    dashboard: DashboardDoor
    sessions: Sessions
    #: The admin's dashboard token (tenancy/sessions.py ``admin_token``).
    dashboard_token: str
    #: The timeout a sandbox gets when its creator names none, in seconds.
    sandbox_timeout: float


def _services(connection: HTTPConnection) -> Services:
    return cast(Services, connection.app.state.services)


def _caller(connection: HTTPConnection) -> str | None:
    """The project whose token came with the request; None for the host's admin."""
    return caller_project(connection.state)


def creator(caller: str | None) -> str:
    """How a VM's creation record names who asked for it."""
    return "admin" if caller is None else f"project {caller}"


Svc = Annotated[Services, Depends(_services)]
Caller = Annotated[str | None, Depends(_caller)]
