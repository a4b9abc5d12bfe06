"""Installer VMs' CD-ROM media routes: eject, insert (vms/media.py)."""

from __future__ import annotations

from fastapi import APIRouter

from bungalow.daemon.api.deps import Svc
from bungalow.daemon.api.schemas import MediaInsert, VmInfo

router = APIRouter(prefix="/v1/vms/{name}/media")


@router.delete("")
async def eject(name: str, svc: Svc) -> VmInfo:
    """Empty the VM's CD-ROM drive (live through QMP if it runs)."""
    return svc.views.vm(await svc.media.eject(name))


@router.put("")
async def insert(name: str, body: MediaInsert, svc: Svc) -> VmInfo:
    """Put an ISO in the VM's CD-ROM drive: an ISO image, or an ISO file's absolute path
    (imported first unless its content is stored already)."""
    return svc.views.vm(await svc.media.insert(name, body.medium))
