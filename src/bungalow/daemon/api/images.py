"""Image routes: list, inspect, build (with streamed progress), import, remove."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from bungalow.daemon.api.deps import Manager, SnapshotOps
from bungalow.daemon.api.schemas import ImageBuild, ImageImport, ImageInfo
from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import BungalowError, ConflictError
from bungalow.images.build import build_image
from bungalow.images.recipes import RECIPES
from bungalow.images.store import Image
from bungalow.names import validate_name

router = APIRouter(prefix="/v1/images")

_build_lock = asyncio.Lock()


def image_info(manager: VmManager, image: Image) -> ImageInfo:
    users = [vm.name for vm in manager.list() if vm.image_id == image.id]
    return ImageInfo(
        id=image.id,
        name=image.name or image.short_id,
        kind=image.kind,
        size=image.size,
        virtual_size=image.virtual_size,
        created=image.created.timestamp(),
        os_release=image.os_release,
        kernel_version=image.kernel_version,
        used_by=users,
    )


@router.get("")
async def list_images(manager: Manager) -> list[ImageInfo]:
    return [image_info(manager, image) for image in manager.images.list()]


@router.get("/recipes")
async def list_recipes() -> list[str]:
    """Names of the images this daemon can build from Debian packages."""
    return sorted(RECIPES)


@router.get("/{ref}")
async def get_image(ref: str, manager: Manager) -> ImageInfo:
    return image_info(manager, manager.images.get(ref))


@router.delete("/{ref}", status_code=204)
async def remove_image(ref: str, manager: Manager, snapshots: SnapshotOps) -> None:
    image = manager.images.get(ref)
    users = [vm.name for vm in manager.list() if vm.image_id == image.id]
    users += snapshots.image_users(image.id)
    if users:
        raise ConflictError(
            f"The image {image.name} is used by {', '.join(users)}; remove "
            f"{'that' if len(users) == 1 else 'those'} first."
        )
    await snapshots.retire_templates(image.id)
    await asyncio.to_thread(manager.images.remove, image.id)


@router.post("/import", status_code=201)
async def import_image(body: ImageImport, manager: Manager) -> ImageInfo:
    validate_name(body.name, what="image")
    image = await asyncio.to_thread(manager.images.import_disk, Path(body.path), body.name)
    return image_info(manager, image)


@router.post("/build")
async def build(body: ImageBuild, manager: Manager) -> StreamingResponse:
    """Build an image from its recipe, streaming ``progress`` events, then ``done``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def progress(stage: str, fraction: float) -> None:
        event = {"type": "progress", "stage": stage, "fraction": fraction}
        loop.call_soon_threadsafe(queue.put_nowait, event)

    async def run() -> None:
        try:
            async with _build_lock:
                image = await asyncio.to_thread(
                    build_image, manager.images, body.name, force=body.force, progress=progress
                )
            info = image_info(manager, image).model_dump()
            await queue.put({"type": "done", "image": info})
        except BungalowError as exc:
            await queue.put({"type": "error", "code": exc.code, "message": exc.message})
        except Exception as exc:
            message = f"Building {body.name} failed unexpectedly: {exc}."
            await queue.put({"type": "error", "code": "image_error", "message": message})

    async def stream() -> AsyncIterator[bytes]:
        # The build goes on even if the client goes away: a half-built image is never kept.
        task = asyncio.create_task(run())
        _background.add(task)
        task.add_done_callback(_background.discard)
        while True:
            event = await queue.get()
            yield (json.dumps(event) + "\n").encode()
            if event["type"] in ("done", "error"):
                return

    return StreamingResponse(stream(), media_type="application/x-ndjson")


_background: set[asyncio.Task[None]] = set()
