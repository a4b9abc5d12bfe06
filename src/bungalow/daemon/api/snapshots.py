"""Routes for saved states and what is made from them: snapshots, restores and clones."""

from __future__ import annotations

from fastapi import APIRouter

from bungalow.daemon.api.deps import Caller, Svc, creator
from bungalow.daemon.api.schemas import CloneCreate, SnapshotCreate, SnapshotInfo, VmInfo

router = APIRouter(prefix="/v1/vms/{name}")


@router.get("/snapshots")
async def list_snapshots(name: str, svc: Svc) -> list[SnapshotInfo]:
    return [svc.views.snapshot(snapshot) for snapshot in svc.snapshots.list(name)]


@router.post("/snapshots", status_code=201)
async def create_snapshot(name: str, body: SnapshotCreate, svc: Svc) -> SnapshotInfo:
    return svc.views.snapshot(await svc.snapshots.create(name, body.name))


@router.get("/snapshots/{snapshot}")
async def get_snapshot(name: str, snapshot: str, svc: Svc) -> SnapshotInfo:
    return svc.views.snapshot(svc.snapshots.get(name, snapshot))


@router.delete("/snapshots/{snapshot}", status_code=204)
async def remove_snapshot(name: str, snapshot: str, svc: Svc) -> None:
    await svc.snapshots.remove(name, snapshot)


@router.post("/snapshots/{snapshot}/restore")
async def restore_snapshot(name: str, snapshot: str, svc: Svc) -> VmInfo:
    return svc.views.vm(await svc.snapshots.restore(name, snapshot))


@router.post("/clone", status_code=201)
async def clone_vm(name: str, body: CloneCreate, svc: Svc, caller: Caller) -> VmInfo:
    made = await svc.snapshots.clone(name, body.name, body.snapshot, created_by=creator(caller))
    return svc.views.vm(made)
