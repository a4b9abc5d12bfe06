"""Routes for a VM's policies: its lease, its idle policy, suspend, and restoring deleted VMs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from bungalow.daemon.api.deps import Caller, Manager
from bungalow.daemon.api.schemas import VmInfo
from bungalow.daemon.api.views import vm_info
from bungalow.daemon.policies.settings import idle_changes
from bungalow.daemon.server.wiring_policies import policies_of

router = APIRouter(prefix="/v1")


class LeaseRequest(BaseModel):
    timeout: str | float | None = Field(description="90s, 10m, 2h... from now; null drops it")
    on_expiry: str | None = Field(
        default=None, description="stop, suspend, snapshot-and-delete or delete"
    )


class LeaseRenewal(BaseModel):
    duration: str | float = Field(description="the lease ends this long from now: 1h, 30m...")


class IdleUpdate(BaseModel):
    after: str | float | None = Field(default=None, description="idle this long: 30m, 2h...")
    action: str | None = Field(default=None, description="stop, suspend, ..., or none")
    cpu: str | float | None = Field(default=None, description="busy above this: 5% or 0.05")
    disk: str | int | None = Field(default=None, description="bytes a second: 64K")
    net: str | int | None = Field(default=None, description="bytes a second: 16K")


@router.post("/vms/{name}/lease")
async def set_lease(
    name: str, body: LeaseRequest, manager: Manager, connection: HTTPConnection
) -> VmInfo:
    leases = policies_of(connection).leases
    return vm_info(manager, await leases.set(name, body.timeout, body.on_expiry))


@router.post("/vms/{name}/lease/renew")
async def renew_lease(
    name: str, body: LeaseRenewal, manager: Manager, connection: HTTPConnection
) -> VmInfo:
    return vm_info(manager, await policies_of(connection).leases.renew(name, body.duration))


@router.patch("/vms/{name}/idle")
async def set_idle(name: str, body: IdleUpdate, manager: Manager) -> VmInfo:
    """Change the VM's own idle policy; the values left out keep theirs."""
    changes = idle_changes(body.model_dump())
    async with manager.lock(name):
        vm = manager.get(name)
        vm = vm.with_changes(idle={**vm.idle, **changes})
        manager.store.update(vm)
        shown = ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                          for key, value in sorted(vm.idle.items()))  # fmt: skip
        manager.store.add_event(name, "idle-policy", f"idle policy: {shown}")
    return vm_info(manager, vm)


@router.post("/vms/{name}/suspend")
async def suspend_vm(name: str, manager: Manager, connection: HTTPConnection) -> VmInfo:
    """Save the running machine and end its QEMU; `start` carries on from there."""
    return vm_info(manager, await policies_of(connection).suspender.suspend(name))


@router.get("/deleted")
async def list_deleted(connection: HTTPConnection, caller: Caller) -> list[dict[str, Any]]:
    """VMs removed by snapshot-and-delete that can still be restored."""
    return [
        {"name": d.name, "deleted": d.deleted, "keep_until": d.keep_until, "project": d.project,
         "owner": d.record.get("owner"), "labels": d.record.get("labels", {}),
         "state": d.record.get("state")}
        for d in policies_of(connection).restorable.list(caller)
    ]  # fmt: skip


@router.post("/deleted/{name}/restore", status_code=201)
async def restore_deleted(
    name: str, manager: Manager, connection: HTTPConnection, caller: Caller
) -> VmInfo:
    return vm_info(manager, await policies_of(connection).restorable.restore(name, caller))
