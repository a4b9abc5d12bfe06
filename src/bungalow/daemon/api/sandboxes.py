"""Routes for sandboxes: made in a fraction of a second from a template, and forks."""

from __future__ import annotations

from fastapi import APIRouter

from bungalow.daemon.api.deps import Caller, Svc, creator
from bungalow.daemon.api.schemas import ForkRequest, SandboxCreate, VmInfo
from bungalow.daemon.sandboxes.service import SandboxRequest
from bungalow.daemon.vms.requests import Ownership
from bungalow.units import parse_duration, parse_size

router = APIRouter(prefix="/v1")


@router.post("/vms/{name}/fork", status_code=201)
async def fork_vm(name: str, body: ForkRequest, svc: Svc) -> list[VmInfo]:
    return [svc.views.vm(vm) for vm in await svc.sandboxes.fork(name, body.count)]


@router.post("/sandboxes", status_code=201)
async def create_sandbox(body: SandboxCreate, svc: Svc, caller: Caller) -> VmInfo:
    request = SandboxRequest(
        image=body.image,
        cpus=body.cpus,
        memory=parse_size(body.memory, what="memory size"),
        disk=None if body.disk is None else parse_size(body.disk, what="disk size"),
        timeout=_timeout(body, svc.sandbox_timeout),
        name=body.name,
        warm=body.warm,
        network=body.network,
        ownership=Ownership(
            project=caller,
            owner=body.owner,
            labels=body.labels,
            created_by=creator(caller),
        ),
    )
    return svc.views.vm(await svc.sandboxes.create(request))


def _timeout(body: SandboxCreate, default: float) -> float | None:
    """The timeout asked for; the daemon's default when the request names none."""
    if "timeout" not in body.model_fields_set:
        return default
    return None if body.timeout is None else parse_duration(body.timeout, what="timeout")
