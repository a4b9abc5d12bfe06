"""Project routes, for the host's admin only (access.py keeps project tokens out)."""

from __future__ import annotations

import json
from typing import Any, cast

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from bungalow.daemon.policies.settings import idle_changes
from bungalow.daemon.tenancy.projects import Project, Projects
from bungalow.units import parse_size

router = APIRouter(prefix="/v1/projects")


class ProjectQuota(BaseModel):
    max_vcpus: int | None = None
    max_memory: str | int | None = None
    max_disk: str | int | None = None
    max_vms: int | None = None
    idle_after: str | float | None = None
    on_idle: str | None = None
    idle_cpu: str | float | None = None
    idle_disk: str | int | None = None
    idle_net: str | int | None = None

    def idle(self) -> dict[str, object]:
        """The project's default idle policy changes, parsed (daemon/policy.py)."""
        values = {"after": self.idle_after, "action": self.on_idle, "cpu": self.idle_cpu}
        return idle_changes({**values, "disk": self.idle_disk, "net": self.idle_net})

    def values(self) -> dict[str, int | None]:
        return {
            "max_vcpus": self.max_vcpus,
            "max_memory": None if self.max_memory is None else parse_size(self.max_memory),
            "max_disk": None if self.max_disk is None else parse_size(self.max_disk),
            "max_vms": self.max_vms,
        }


class ProjectCreate(ProjectQuota):
    name: str


def _projects(connection: HTTPConnection) -> Projects:
    return cast(Projects, connection.app.state.projects)


def _view(projects: Projects, project: Project) -> dict[str, Any]:
    held, count = projects.usage(project.name)
    return {
        "name": project.name,
        "created": project.created,
        "quota": {
            "vcpus": project.max_vcpus, "memory": project.max_memory,
            "disk": project.max_disk, "vms": project.max_vms,
        },
        "idle": json.loads(project.idle or "{}"),
        "used": {"vcpus": held.cpus, "memory": held.memory, "disk": held.disk, "vms": count},
    }  # fmt: skip


@router.post("", status_code=201)
async def create_project(body: ProjectCreate, connection: HTTPConnection) -> dict[str, Any]:
    """Make a project; the answer carries its token, which is never shown again."""
    projects = _projects(connection)
    project, token = projects.create(body.name, **body.values())
    return {**_view(projects, project), "token": token}


@router.get("")
async def list_projects(connection: HTTPConnection) -> list[dict[str, Any]]:
    projects = _projects(connection)
    return [_view(projects, project) for project in projects.list()]


@router.patch("/{name}")
async def set_quota(name: str, body: ProjectQuota, connection: HTTPConnection) -> dict[str, Any]:
    projects = _projects(connection)
    idle = body.idle()
    changes = {key: value for key, value in body.values().items() if value is not None}
    project = projects.set_quota(name, **changes)
    if idle:
        project = projects.set_idle(name, idle)
    return _view(projects, project)


@router.delete("/{name}", status_code=204)
async def remove_project(name: str, connection: HTTPConnection, orphan_vms: bool = False) -> None:
    _projects(connection).remove(name, orphan_vms=orphan_vms)
