"""The REST API: one FastAPI app, its error mapping, and its routers.

Errors leave as ``{"error": {"code", "message"}}`` with the status of their
class in :mod:`bungalow.errors`, which the client turns back into the same
class. A request the schema refuses is a 400 with one sentence (refusals.py),
like any other bad request, and so is one FastAPI or Starlette refuses before
(a body that is not JSON, a path or method the API does not have: 404, 405);
anything else that escapes a route is bungalowd's own fault: a 500 with a
sentence, and the traceback in the daemon's log.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from bungalow import __version__
from bungalow.daemon.api import (
    costs,
    guest,
    images,
    leases,
    media,
    metrics,
    networks,
    projects,
    sandboxes,
    screen,
    snapshots,
    sprawl,
    vms,
)
from bungalow.daemon.api.access import ProjectScope
from bungalow.daemon.api.dashboard import control
from bungalow.daemon.api.dashboard.auth import DashboardAuth, SessionScope
from bungalow.daemon.api.deps import Services
from bungalow.daemon.api.refusals import refusal, refused_by_starlette
from bungalow.daemon.api.schemas import ErrorBody
from bungalow.errors import BungalowError, CapacityError

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
_ROUTERS = (
    vms, guest, snapshots, sandboxes, images, leases, sprawl, projects, networks, costs, metrics,
    screen,
    media, control,
)  # fmt: skip


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"code": code, "message": message}},
        headers=headers,
    )


class _Api(FastAPI):
    """FastAPI, with its schema saying what this daemon answers to a bad request: a 400 (or
    other 4xx) with the error object, never the 422 FastAPI would document, and errors as
    JSON on every route, those that answer a stream or text too."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
            for item in schema["paths"].values():
                for operation in item.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    for status in ("4XX", "5XX"):
                        if status in responses:
                            responses[status]["content"] = error
            for unused in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(unused, None)
            self.openapi_schema = schema
        return self.openapi_schema


def create_app(
    services: Services, lifespan: Lifespan | None = None, *, dashboard: DashboardAuth | None = None
) -> FastAPI:
    """The API over ``services``: on the socket, who asks is the bearer token's project
    (or the admin); with ``dashboard``, the dashboard session's (api/dashboard/auth.py)."""
    app = _Api(
        title="bungalowd",
        version=__version__,
        description="Real virtual machines on this host, one QEMU each.",
        lifespan=lifespan,
        responses={
            "4XX": {"model": ErrorBody, "description": "the request was refused: one sentence"},
            "5XX": {"model": ErrorBody, "description": "bungalowd failed: one sentence"},
        },
    )
    app.state.services = services
    for module in _ROUTERS:
        app.include_router(module.router)
    if dashboard is None:
        app.add_middleware(ProjectScope, projects=services.projects)
    else:
        app.add_middleware(SessionScope, auth=dashboard)

    @app.exception_handler(BungalowError)
    async def _bungalow_error(_request: Request, exc: BungalowError) -> JSONResponse:
        return _error(exc.http_status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, *refusal(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _refused(request: Request, exc: HTTPException) -> JSONResponse:
        code, message = refused_by_starlette(
            exc.status_code, str(exc.detail), request.method, request.url.path
        )
        return _error(exc.status_code, code, message, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # The host's state, not bungalow's fault: what was half written is undone by
            # the operation's own clean-up on the way here.
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            where = f" writing {exc.filename}" if exc.filename else ""
            return _error(
                CapacityError.http_status, CapacityError.code,
                f"The host's disk is full ({exc.strerror}{where}); free space on it, or "
                "remove VMs and snapshots you no longer need, and try again.",
            )  # fmt: skip
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(
            500, "error", f"bungalowd failed unexpectedly ({type(exc).__name__}); see its log."
        )

    return app
