"""Who is asking: the host's admin (no token on the owner-only socket) or one project.

A pure ASGI middleware, so HTTP requests and websockets (exec, console) pass
the same gate. With a project's token (``Authorization: Bearer bgw_...``), or a
dashboard session of a project (api/dashboard/auth.py applies the same
:func:`admit`):

- a path naming a VM (``/v1/vms/NAME...``) of another project, or of none,
  answers exactly as if that VM did not exist;
- projects, networks, image building, importing and removal are the admin's;
- list routes see only the project's VMs (they read ``scope["state"]["project"]``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bungalow.daemon.state.audit import acting_as
from bungalow.daemon.tenancy.projects import Projects
from bungalow.errors import (
    BungalowError,
    ForbiddenError,
    UnauthorizedError,
    VmNotFoundError,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_VM_PATH = re.compile(r"^/v1/vms/([^/]+)")
_ADMIN_ONLY = (
    (re.compile(r"^/v1/projects"), None),
    (re.compile(r"^/v1/networks"), None),
    (re.compile(r"^/v1/images/(build|import)"), None),
    (re.compile(r"^/v1/images/[^/]+$"), "DELETE"),
    (re.compile(r"^/v1/dashboard"), None),
)


class ProjectScope:
    def __init__(self, app: App, projects: Projects) -> None:
        self.app = app
        self.projects = projects

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["project"] = None
        token = _bearer(scope)
        if token is not None:
            try:
                scope["state"]["project"] = self._resolve(scope, token)
            except BungalowError as exc:
                await refuse(scope, receive, send, exc)
                return
        project = scope["state"]["project"]
        with acting_as("admin" if project is None else f"project {project}"):
            await self.app(scope, receive, send)

    def _resolve(self, scope: Scope, token: str) -> str:
        project = self.projects.resolve(token)
        if project is None:
            raise UnauthorizedError(
                "The API token is not valid; ask the host's admin for your project's token."
            )
        admit(self.projects, scope["path"], scope.get("method", "GET"), project.name)
        return project.name


def admit(projects: Projects, path: str, method: str, project: str) -> None:
    """Refuse ``project`` what is not its own: ForbiddenError for the admin's routes,
    VmNotFoundError for a VM of another project or of none (as if it did not exist)."""
    for pattern, only in _ADMIN_ONLY:
        if pattern.match(path) and (only is None or method == only):
            raise ForbiddenError(
                f"A project token cannot {method} {path}; that is for the host's admin."
            )
    match = _VM_PATH.match(path)
    if match:
        see_vm(projects, match.group(1), project)


def see_vm(projects: Projects, name: str, project: str | None) -> None:
    """VmNotFoundError unless the VM ``name`` exists and ``project`` (None: the admin)
    may see it."""
    vm = projects.store.vms.find(name)
    if vm is None or (project is not None and vm.project != project):
        raise VmNotFoundError(
            f"There is no VM named {name}; `bungalow ls` lists the VMs that exist."
        )


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            text = str(value.decode("latin-1"))
            return text[7:].strip() if text.lower().startswith("bearer ") else text.strip()
    return None


async def refuse(scope: Scope, receive: Receive, send: Send, exc: BungalowError) -> None:
    """Answer with the error: a JSON body over HTTP; over a websocket the same object as
    one text frame, then a close with code 4000 + the HTTP status (4401, 4403, 4404...)."""
    error = {"code": exc.code, "message": exc.message}
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps({"type": "error", **error})})
        await send({"type": "websocket.close", "code": 4000 + exc.http_status % 1000})
        return
    await send(
        {
            "type": "http.response.start",
            "status": exc.http_status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps({"error": error}).encode()})


def caller_project(state: Any) -> str | None:
    """The project of the request's token, None for the admin."""
    project = getattr(state, "project", None)
    return project if isinstance(project, str) else None
