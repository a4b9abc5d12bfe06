"""Image routes: list, inspect, build (with streamed progress), import, remove."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter

from bungalow.daemon.api.deps import Caller, Svc
from bungalow.daemon.api.responses import NdjsonResponse
from bungalow.daemon.api.schemas import ImageBuild, ImageImport, ImageInfo

router = APIRouter(prefix="/v1/images")


@router.get("")
async def list_images(svc: Svc, caller: Caller) -> list[ImageInfo]:
    return [svc.views.image(image, caller) for image in svc.images.list()]


@router.get("/recipes")
async def list_recipes(svc: Svc) -> list[str]:
    """Names of the images this daemon can build from Debian packages."""
    return svc.images.recipes()


@router.get("/{ref}")
async def get_image(ref: str, svc: Svc, caller: Caller) -> ImageInfo:
    return svc.views.image(svc.images.get(ref), caller)


@router.delete("/{ref}", status_code=204)
async def remove_image(ref: str, svc: Svc) -> None:
    await svc.images.remove(ref)


@router.post("/import", status_code=201)
async def import_image(body: ImageImport, svc: Svc) -> ImageInfo:
    vars_file = None if body.vars is None else Path(body.vars)
    image = await svc.images.import_disk(
        Path(body.path), body.name, firmware=body.firmware, vars_file=vars_file
    )
    return svc.views.image(image)


@router.post("/build", response_class=NdjsonResponse)
async def build(body: ImageBuild, svc: Svc) -> NdjsonResponse:
    """Build an image from its recipe, streaming NDJSON ``progress`` events, then ``done``
    (with the image) or ``error``."""
    events = svc.images.build(body.name, force=body.force)

    async def stream() -> AsyncIterator[bytes]:
        async for event in events:
            if event["type"] == "done":
                event = {**event, "image": svc.views.image(event["image"]).model_dump()}
            yield (json.dumps(event) + "\n").encode()

    return NdjsonResponse(stream())
