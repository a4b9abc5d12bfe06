"""Routes for saved states and what is made from them: pause, snapshots, clones, sandboxes."""

from __future__ import annotations

from fastapi import APIRouter

from bungalow.daemon.api.deps import Caller, Manager, SandboxOps, SnapshotOps, creator
from bungalow.daemon.api.schemas import (
    CloneCreate,
    ForkRequest,
    SandboxCreate,
    SnapshotCreate,
    SnapshotInfo,
    VmInfo,
)
from bungalow.daemon.api.views import snapshot_info, vm_info
from bungalow.daemon.sandboxes.templates import SandboxRequest
from bungalow.names import validate_labels, validate_owner
from bungalow.units import parse_duration, parse_size

router = APIRouter(prefix="/v1")


@router.post("/vms/{name}/pause")
async def pause_vm(name: str, manager: Manager) -> VmInfo:
    return vm_info(manager, await manager.pause(name))


@router.post("/vms/{name}/resume")
async def resume_vm(name: str, manager: Manager) -> VmInfo:
    return vm_info(manager, await manager.resume(name))


@router.get("/vms/{name}/snapshots")
async def list_snapshots(name: str, manager: Manager, snapshots: SnapshotOps) -> list[SnapshotInfo]:
    return [snapshot_info(manager, snapshot) for snapshot in snapshots.list(name)]


@router.post("/vms/{name}/snapshots", status_code=201)
async def create_snapshot(
    name: str, body: SnapshotCreate, manager: Manager, snapshots: SnapshotOps
) -> SnapshotInfo:
    return snapshot_info(manager, await snapshots.create(name, body.name))


@router.get("/vms/{name}/snapshots/{snapshot}")
async def get_snapshot(
    name: str, snapshot: str, manager: Manager, snapshots: SnapshotOps
) -> SnapshotInfo:
    return snapshot_info(manager, snapshots.get(name, snapshot))


@router.delete("/vms/{name}/snapshots/{snapshot}", status_code=204)
async def remove_snapshot(name: str, snapshot: str, snapshots: SnapshotOps) -> None:
    await snapshots.remove(name, snapshot)


@router.post("/vms/{name}/snapshots/{snapshot}/restore")
async def restore_snapshot(
    name: str, snapshot: str, manager: Manager, snapshots: SnapshotOps
) -> VmInfo:
    return vm_info(manager, await snapshots.restore(name, snapshot))


@router.post("/vms/{name}/clone", status_code=201)
async def clone_vm(
    name: str, body: CloneCreate, manager: Manager, snapshots: SnapshotOps, caller: Caller
) -> VmInfo:
    made = await snapshots.clone(name, body.name, body.snapshot, created_by=creator(caller))
    return vm_info(manager, made)


@router.post("/vms/{name}/fork", status_code=201)
async def fork_vm(
    name: str, body: ForkRequest, manager: Manager, sandboxes: SandboxOps
) -> list[VmInfo]:
    return [vm_info(manager, vm) for vm in await sandboxes.fork(name, body.count)]


@router.post("/sandboxes", status_code=201)
async def create_sandbox(
    body: SandboxCreate, manager: Manager, sandboxes: SandboxOps, caller: Caller
) -> VmInfo:
    request = SandboxRequest(
        project=caller,
        image=body.image,
        cpus=body.cpus,
        memory=parse_size(body.memory, what="memory size"),
        disk=None if body.disk is None else parse_size(body.disk, what="disk size"),
        timeout=_sandbox_timeout(body, sandboxes.config.sandbox_timeout),
        name=body.name,
        warm=body.warm,
        owner=None if body.owner is None else validate_owner(body.owner),
        labels=validate_labels(body.labels),
        created_by=creator(caller),
    )
    return vm_info(manager, await sandboxes.create(request))


def _sandbox_timeout(body: SandboxCreate, default: float) -> float | None:
    """The timeout asked for; the daemon's default when the request names none."""
    if "timeout" not in body.model_fields_set:
        return default
    return None if body.timeout is None else parse_duration(body.timeout, what="timeout")
