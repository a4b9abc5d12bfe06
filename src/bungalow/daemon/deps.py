"""FastAPI dependencies shared by the route modules."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends
from starlette.requests import HTTPConnection

from bungalow.daemon.manager import VmManager


def _manager(connection: HTTPConnection) -> VmManager:
    """The one manager of this daemon; works for HTTP requests and websockets alike."""
    return cast(VmManager, connection.app.state.manager)


Manager = Annotated[VmManager, Depends(_manager)]
