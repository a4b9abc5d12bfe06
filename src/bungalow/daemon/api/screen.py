"""A pc VM's screen and keyboard: screenshot, keys, typing and a one-time VNC endpoint."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from bungalow.daemon.api.deps import Svc
from bungalow.daemon.api.responses import PngResponse
from bungalow.daemon.api.schemas import KeysRequest, TypeRequest, VncInfo
from bungalow.daemon.vms import screen

router = APIRouter(prefix="/v1/vms/{name}")


@router.get("/screenshot", response_class=PngResponse)
async def screenshot(name: str, svc: Svc) -> PngResponse:
    """What the running pc VM's display shows now, as a PNG (a micro VM, or a VM that is
    not running, is refused with a sentence)."""
    return PngResponse(await screen.screenshot(svc.vms, name))


@router.post("/keys", status_code=204)
async def send_keys(name: str, body: KeysRequest, svc: Svc) -> None:
    """Press each key combination in turn on the VM's keyboard."""
    await screen.send_keys(svc.vms, name, body.keys)


@router.post("/type", status_code=204)
async def type_text(name: str, body: TypeRequest, svc: Svc) -> None:
    """Type the text as key presses of ``layout`` (a character it cannot type: a sentence,
    and nothing typed)."""
    await screen.type_text(svc.vms, name, body.text, body.layout)


@router.post("/vnc")
async def open_vnc(name: str, svc: Svc) -> VncInfo:
    """A new one-time VNC endpoint on 127.0.0.1 with a fresh password; the VM's last one
    stops working."""
    endpoint = await screen.open_vnc(svc.vms, name)
    return VncInfo(url=endpoint.url, **dataclasses.asdict(endpoint))
