"""Project routes, for the host's admin only (access.py keeps project tokens out)."""

from __future__ import annotations

from fastapi import APIRouter

from bungalow.daemon.api.deps import Svc
from bungalow.daemon.api.schemas import (
    ProjectCreate,
    ProjectInfo,
    ProjectQuota,
    ProjectQuotaView,
    ProjectUsage,
)
from bungalow.daemon.policies.settings import idle_changes
from bungalow.daemon.state.records import Project
from bungalow.daemon.tenancy.projects import Projects
from bungalow.units import parse_size

router = APIRouter(prefix="/v1/projects")


def _quota(body: ProjectQuota) -> dict[str, int | None]:
    """The quotas given (sizes parsed), leaving out those not given."""
    values = {
        "max_vcpus": body.max_vcpus,
        "max_memory": None if body.max_memory is None else parse_size(body.max_memory),
        "max_disk": None if body.max_disk is None else parse_size(body.max_disk),
        "max_vms": body.max_vms,
    }
    return {key: value for key, value in values.items() if value is not None}


def _idle(body: ProjectQuota) -> dict[str, object]:
    """The project's default idle policy changes, parsed (policies/settings.py)."""
    return idle_changes({
        "after": body.idle_after, "action": body.on_idle, "cpu": body.idle_cpu,
        "disk": body.idle_disk, "net": body.idle_net,
    })  # fmt: skip


def _view(projects: Projects, project: Project, token: str | None = None) -> ProjectInfo:
    held, count = projects.usage(project.name)
    return ProjectInfo(
        name=project.name,
        created=project.created,
        quota=ProjectQuotaView(
            vcpus=project.max_vcpus,
            memory=project.max_memory,
            disk=project.max_disk,
            vms=project.max_vms,
        ),
        idle=project.idle,
        used=ProjectUsage(vcpus=held.cpus, memory=held.memory, disk=held.disk, vms=count),
        token=token,
    )


@router.post("", status_code=201)
async def create_project(body: ProjectCreate, svc: Svc) -> ProjectInfo:
    """Make a project; the answer carries its token, which is never shown again."""
    project, token = svc.projects.create(body.name, **_quota(body))
    if idle := _idle(body):
        project = svc.projects.change(project.name, {}, idle)
    return _view(svc.projects, project, token)


@router.get("")
async def list_projects(svc: Svc) -> list[ProjectInfo]:
    return [_view(svc.projects, project) for project in svc.projects.list()]


@router.patch("/{name}")
async def set_quota(name: str, body: ProjectQuota, svc: Svc) -> ProjectInfo:
    return _view(svc.projects, svc.projects.change(name, _quota(body), _idle(body)))


@router.delete("/{name}", status_code=204)
async def remove_project(name: str, svc: Svc, orphan_vms: bool = False) -> None:
    svc.projects.remove(name, orphan_vms=orphan_vms)
