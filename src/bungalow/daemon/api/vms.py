"""The REST API: one FastAPI app, its error mapping and the VM and host routes.

Errors leave as ``{"error": {"code", "message"}}`` with the status of their
class in :mod:`bungalow.errors`, which the client turns back into the same class.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from bungalow.daemon.api.deps import Caller, Manager, creator
from bungalow.daemon.api.guest import router as guest_router
from bungalow.daemon.api.images import router as images_router
from bungalow.daemon.api.schemas import (
    AccelInfo,
    HostInfo,
    LimitsUpdate,
    StopRequest,
    VmCreate,
    VmInfo,
)
from bungalow.daemon.api.snapshots import router as snapshots_router
from bungalow.daemon.api.views import vm_info
from bungalow.daemon.policies.settings import idle_changes
from bungalow.daemon.sandboxes.templates import Sandboxes
from bungalow.daemon.server.wiring_policies import policies_of
from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.state.lifecycle import ACTIVE_STATES
from bungalow.daemon.state.store import VmRecord
from bungalow.daemon.vms.limits import Limits
from bungalow.daemon.vms.manager import VmManager
from bungalow.daemon.vms.requests import CreateRequest
from bungalow.errors import BungalowError, ForbiddenError
from bungalow.names import validate_labels, validate_owner
from bungalow.qemu.accel import probe_accelerator
from bungalow.qemu.process import qemu_version
from bungalow.units import parse_size

router = APIRouter(prefix="/v1")


def create_app(manager: VmManager, snapshots: Snapshots, sandboxes: Sandboxes) -> FastAPI:
    app = FastAPI(
        title="bungalowd",
        version="1",
        description="Real virtual machines on this host, one QEMU each.",
    )
    app.state.manager = manager
    app.state.snapshots = snapshots
    app.state.sandboxes = sandboxes
    app.include_router(router)
    app.include_router(snapshots_router)
    app.include_router(guest_router)
    app.include_router(images_router)

    @app.exception_handler(BungalowError)
    async def _bungalow_error(_request: Request, exc: BungalowError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.http_status,
            content={"error": {"code": exc.code, "message": exc.message}},
        )

    return app


@router.get("/health")
async def health() -> dict[str, object]:
    return {"ok": True, "pid": os.getpid()}


@router.get("/vms")
async def list_vms(manager: Manager, caller: Caller) -> list[VmInfo]:
    return [vm_info(manager, vm) for vm in manager.list() if visible(vm, caller)]


def visible(vm: VmRecord, caller: str | None) -> bool:
    """Whether the caller may see the VM: the admin sees all, a project its own."""
    return caller is None or vm.project == caller


def project_for(caller: str | None, asked: str | None) -> str | None:
    """The project a new VM belongs to: the token's, or the one the admin names."""
    if caller is not None and asked not in (None, caller):
        raise ForbiddenError(f"A token of project {caller} cannot make VMs in project {asked}.")
    return caller or asked


@router.post("/vms", status_code=201)
async def create_vm(
    body: VmCreate, manager: Manager, caller: Caller, connection: HTTPConnection
) -> VmInfo:
    project = project_for(caller, body.project)
    expires_at, on_expiry = policies_of(connection).leases.launch_terms(body.ttl, body.on_expiry)
    request = CreateRequest(
        expires_at=expires_at,
        on_expiry=on_expiry,
        idle=idle_changes({"after": body.idle_after, "action": body.on_idle}),
        project=project,
        name=body.name,
        image=body.image,
        cpus=body.cpus,
        memory=parse_size(body.memory, what="memory size"),
        disk=None if body.disk is None else parse_size(body.disk, what="disk size"),
        ports=tuple(body.ports),
        accel=body.accel,
        profile=body.profile,
        limits=Limits().changed(limit_fields(body)).to_json(),
        owner=None if body.owner is None else validate_owner(body.owner),
        labels=validate_labels(body.labels),
        created_by=creator(caller),
    )
    return vm_info(manager, await manager.create(request))


def limit_fields(body: LimitsUpdate) -> dict[str, object]:
    return {key: getattr(body, key) for key in LimitsUpdate.model_fields}


@router.patch("/vms/{name}/limits")
async def set_limits(name: str, body: LimitsUpdate, manager: Manager) -> VmInfo:
    """Change a VM's limits; a running VM's QEMU gets them at once."""
    return vm_info(manager, await manager.set_limits(name, limit_fields(body)))


@router.get("/vms/{name}")
async def get_vm(name: str, manager: Manager) -> VmInfo:
    return vm_info(manager, manager.get(name))


@router.delete("/vms/{name}", status_code=204)
async def remove_vm(name: str, manager: Manager) -> None:
    await manager.remove(name)


@router.post("/vms/{name}/start")
async def start_vm(name: str, manager: Manager) -> VmInfo:
    return vm_info(manager, await manager.start(name))


@router.post("/vms/{name}/stop")
async def stop_vm(name: str, manager: Manager, body: StopRequest | None = None) -> VmInfo:
    timeout = body.timeout if body is not None else 30.0
    return vm_info(manager, await manager.stop(name, timeout))


@router.get("/host")
async def host_info(manager: Manager) -> HostInfo:
    capacity = manager.capacity()
    allocation = manager.allocation()
    choice = probe_accelerator()
    vms = manager.list()
    running = [vm for vm in vms if vm.state in ACTIVE_STATES]
    return HostInfo(
        hostname=socket.gethostname(),
        cpus=capacity.cpus,
        memory=capacity.memory_bytes,
        memory_available=capacity.memory_available,
        disk_total=capacity.disk_total,
        disk_free=capacity.disk_free,
        data_dir=str(manager.data.root),
        qemu=qemu_version(),
        accel=AccelInfo(name=choice.name, reason=choice.reason, probe_ms=choice.probe_ms),
        vms=len(vms),
        vms_running=len(running),
        allocated_cpus=allocation.allocated.cpus,
        allocated_memory=allocation.allocated.memory,
        allocated_disk=allocation.allocated.disk,
        ratios=asdict(allocation.ratios),
        limit=asdict(allocation.limit),
        free=asdict(allocation.free),
    )
