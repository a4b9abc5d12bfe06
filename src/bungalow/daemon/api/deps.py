"""FastAPI dependencies shared by the route modules."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends
from starlette.requests import HTTPConnection

from bungalow.daemon.api.access import caller_project
from bungalow.daemon.sandboxes.templates import Sandboxes
from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.vms.manager import VmManager


def _manager(connection: HTTPConnection) -> VmManager:
    """The one manager of this daemon; works for HTTP requests and websockets alike."""
    return cast(VmManager, connection.app.state.manager)


Manager = Annotated[VmManager, Depends(_manager)]


def _snapshots(connection: HTTPConnection) -> Snapshots:
    return cast(Snapshots, connection.app.state.snapshots)


def _sandboxes(connection: HTTPConnection) -> Sandboxes:
    return cast(Sandboxes, connection.app.state.sandboxes)


def creator(caller: str | None) -> str:
    """How a VM's creation record names who asked for it."""
    return "admin" if caller is None else f"project {caller}"


def _caller(connection: HTTPConnection) -> str | None:
    """The project whose token came with the request; None for the host's admin."""
    return caller_project(connection.state)


SnapshotOps = Annotated[Snapshots, Depends(_snapshots)]
Caller = Annotated[str | None, Depends(_caller)]
SandboxOps = Annotated[Sandboxes, Depends(_sandboxes)]
