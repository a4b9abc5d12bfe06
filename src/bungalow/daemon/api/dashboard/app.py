"""The dashboard's app, served on its own TCP listener (server/dashboard.py).

One origin holds it all: the pages (``/ui/``, ``/vendor/``: assets.py), the login
(``/login?ticket=``, ``/auth/*``), the live updates (``/live``: live.py), the VNC bridge
(``/v1/vms/NAME/vnc/ws``: vnc.py) and, under ``/v1/``, the very API the CLI uses (the
same routes and schemas, built by :func:`~bungalow.daemon.api.app.create_app`) behind
the session's gate instead of the socket's (auth.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from bungalow.daemon.api.access import App, Receive, Scope, Send, see_vm
from bungalow.daemon.api.app import create_app
from bungalow.daemon.api.dashboard import assets
from bungalow.daemon.api.dashboard.auth import COOKIE, DashboardAuth, session_answer
from bungalow.daemon.api.dashboard.live import LiveHub
from bungalow.daemon.api.dashboard.vnc import vnc_bridge
from bungalow.daemon.api.deps import Services
from bungalow.daemon.api.refusals import refused_by_starlette
from bungalow.daemon.telemetry.ticks import SampleTicks
from bungalow.daemon.tenancy.sessions import PURPOSES, TICKET_SECONDS, Session
from bungalow.daemon.vms import screen
from bungalow.errors import BungalowError, UserError

#: Seconds the VNC password of a ticket lets a viewer in: the ticket's own life, and
#: time for noVNC to authenticate once its websocket is open.
VNC_PASSWORD_SECONDS = TICKET_SECONDS + 30
_LOGIN_FAILED = """<!doctype html><meta charset="utf-8"><title>bungalow</title>
<p>This login link was used already or has expired; run <code>bungalow dashboard</code>
again for a new one.</p>
"""


def _error(exc: BungalowError) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message}}, status_code=exc.http_status
    )


def _with_cookie(response: Response, auth: DashboardAuth, session: Session) -> Response:
    response.set_cookie(
        COOKIE, session.id, max_age=int(auth.sessions.lifetime), path="/", httponly=True,
        samesite="strict", secure=auth.secure,
    )  # fmt: skip
    return response


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise UserError(
            'The request\'s body is not a JSON object; send one, such as {"token": "..."}.'
        )
    return body


def dashboard_app(
    services: Services, auth: DashboardAuth, ticks: SampleTicks, web: Path = assets.WEB
) -> App:
    """The whole dashboard as one ASGI app; ``/v1/`` goes to the API behind SessionScope,
    the pages come from ``web`` (``static/``, ``node_modules/``)."""
    api = create_app(services, dashboard=auth)
    live = LiveHub(services, ticks, auth.sessions)

    async def login_link(request: Request) -> Response:
        session = auth.sessions.redeem_login(request.query_params.get("ticket"))
        if session is None:
            return HTMLResponse(_LOGIN_FAILED, status_code=401)
        return _with_cookie(RedirectResponse("/ui/", status_code=303), auth, session)

    async def login(request: Request) -> Response:
        auth.check_origin(request.scope, required=False)
        session = auth.login((await _json_body(request)).get("token"))
        return _with_cookie(JSONResponse(session_answer(session)), auth, session)

    async def current(request: Request) -> Response:
        return JSONResponse(session_answer(auth.session(request.scope)))

    async def logout(request: Request) -> Response:
        session = auth.sessions.find(request.cookies.get(COOKIE))
        if session is not None:  # a write like any other: another site cannot log one out
            auth.check_write(request.scope, session)
            auth.sessions.close(session.id)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def ticket(request: Request) -> Response:
        session = auth.session(request.scope)
        auth.check_write(request.scope, session)
        body = await _json_body(request)
        purpose, vm = body.get("purpose"), body.get("vm")
        if purpose not in PURPOSES or not isinstance(vm, str):
            raise UserError(
                "A ticket needs a purpose (console, exec or vnc) and the name of a VM, "
                'such as {"purpose": "console", "vm": "web"}.'
            )
        see_vm(auth.projects, vm, session.project)
        answer: dict[str, Any] = {"expires_in": TICKET_SECONDS}
        if purpose == "vnc":
            answer["password"] = await screen.vnc_password(services.vms, vm, VNC_PASSWORD_SECONDS)
        answer["ticket"] = auth.sessions.issue(session, purpose, vm).id
        return JSONResponse(answer)

    async def events(request: Request) -> Response:
        session = auth.session(request.scope)
        return StreamingResponse(
            live.stream(session),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def vnc(websocket: WebSocket) -> None:
        await vnc_bridge(websocket, auth, services.vms)

    async def bungalow_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BungalowError)
        return _error(exc)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code, message = refused_by_starlette(
            exc.status_code, str(exc.detail), request.method, request.url.path
        )
        return JSONResponse({"error": {"code": code, "message": message}}, exc.status_code)

    site = Starlette(
        routes=[
            Route("/", lambda _request: RedirectResponse("/ui/")),
            Route("/login", login_link),
            Route("/auth/login", login, methods=["POST"]),
            Route("/auth/session", current),
            Route("/auth/logout", logout, methods=["POST"]),
            Route("/auth/tickets", ticket, methods=["POST"]),
            Route("/live", events),
            WebSocketRoute("/v1/vms/{name}/vnc/ws", vnc),
            *assets.mounts(web),
        ],
        exception_handlers={BungalowError: bungalow_error, HTTPException: refused},
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        api_path = path.startswith("/v1/") or path == "/openapi.json"  # the API describes itself
        if api_path and not path.endswith("/vnc/ws"):
            await api(scope, receive, send)
        else:
            await site(scope, receive, send)

    return app
