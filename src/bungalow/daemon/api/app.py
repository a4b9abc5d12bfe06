"""The REST API: one FastAPI app, its error mapping, and its routers.

Errors leave as ``{"error": {"code", "message"}}`` with the status of their
class in :mod:`bungalow.errors`, which the client turns back into the same
class. A body the schema refuses is a 400 with one sentence, like any other
bad request; anything else that escapes a route is bungalowd's own fault: a
500 with a sentence, and the traceback in the daemon's log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bungalow import __version__
from bungalow.daemon.api import (
    costs,
    guest,
    images,
    leases,
    metrics,
    projects,
    sandboxes,
    snapshots,
    sprawl,
    vms,
)
from bungalow.daemon.api.access import ProjectScope
from bungalow.daemon.api.deps import Services
from bungalow.daemon.api.schemas import ErrorBody
from bungalow.errors import BungalowError

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
_ROUTERS = (vms, guest, snapshots, sandboxes, images, leases, sprawl, projects, costs, metrics)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def _sentence(exc: RequestValidationError) -> str:
    """The first thing wrong with a request body, as one sentence."""
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        what = str(error.get("msg", "is not valid")).rstrip(".")
        return f"The request's {where or 'body'} is wrong: {what}; see GET /openapi.json."
    return "The request is not valid; see GET /openapi.json."


class _Api(FastAPI):
    """FastAPI, with its schema saying what this daemon answers to a bad request: a 400 (or
    other 4xx) with the error object, never the 422 FastAPI would document."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            for item in schema["paths"].values():
                for operation in item.values():
                    operation.get("responses", {}).pop("422", None)
            for unused in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(unused, None)
            self.openapi_schema = schema
        return self.openapi_schema


def create_app(services: Services, lifespan: Lifespan | None = None) -> FastAPI:
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
    app.add_middleware(ProjectScope, projects=services.projects)

    @app.exception_handler(BungalowError)
    async def _bungalow_error(_request: Request, exc: BungalowError) -> JSONResponse:
        return _error(exc.http_status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "invalid_request", _sentence(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(
            500, "error", f"bungalowd failed unexpectedly ({type(exc).__name__}); see its log."
        )

    return app
