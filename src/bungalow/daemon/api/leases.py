"""Routes for a VM's policies: its lease, its idle policy, suspend, and restoring deleted VMs."""

from __future__ import annotations

from fastapi import APIRouter

from bungalow.daemon.api.deps import Caller, Svc
from bungalow.daemon.api.schemas import DeletedInfo, IdleUpdate, LeaseRenewal, LeaseRequest, VmInfo

router = APIRouter(prefix="/v1")


@router.post("/vms/{name}/lease")
async def set_lease(name: str, body: LeaseRequest, svc: Svc) -> VmInfo:
    return svc.views.vm(await svc.leases.set(name, body.timeout, body.on_expiry))


@router.post("/vms/{name}/lease/renew")
async def renew_lease(name: str, body: LeaseRenewal, svc: Svc) -> VmInfo:
    return svc.views.vm(await svc.leases.renew(name, body.duration))


@router.patch("/vms/{name}/idle")
async def set_idle(name: str, body: IdleUpdate, svc: Svc) -> VmInfo:
    """Change the VM's own idle policy; the values left out keep theirs."""
    return svc.views.vm(await svc.idleness.set_policy(name, body.model_dump()))


@router.post("/vms/{name}/suspend")
async def suspend_vm(name: str, svc: Svc) -> VmInfo:
    """Save the running machine and end its QEMU; `start` carries on from there."""
    return svc.views.vm(await svc.suspender.suspend(name))


@router.get("/deleted")
async def list_deleted(svc: Svc, caller: Caller) -> list[DeletedInfo]:
    """VMs removed by snapshot-and-delete that can still be restored."""
    return [
        DeletedInfo(
            name=d.name, deleted=d.deleted, keep_until=d.keep_until, project=d.project,
            owner=d.record.get("owner"), labels=d.record.get("labels", {}),
            state=d.record.get("state"),
        )
        for d in svc.restorable.list(caller)
    ]  # fmt: skip


@router.post("/deleted/{name}/restore", status_code=201)
async def restore_deleted(name: str, svc: Svc, caller: Caller) -> VmInfo:
    return svc.views.vm(await svc.restorable.restore(name, caller))
