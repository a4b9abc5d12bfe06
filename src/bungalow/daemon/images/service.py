"""The images this daemon can run: building them from recipes, importing disks, removing.

The image store itself (bungalow/images) knows nothing of VMs; here an image
that a VM or a user's snapshot needs is refused removal with their names, and
sandbox templates of a removed image are retired. One build runs at a time;
a build goes on to its end even if the client that asked goes away, and a
half-built image is never kept (the store's own rule).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bungalow.daemon.snapshots.keeper import SnapshotKeeper
from bungalow.daemon.state.vms import VmTable
from bungalow.errors import BungalowError, ConflictError, UserError
from bungalow.images import iso
from bungalow.images.build import build_image
from bungalow.images.recipes import RECIPES
from bungalow.images.store import Image, ImageStore
from bungalow.names import validate_name
from bungalow.qemu.firmware import check_vars_for


class Images:
    def __init__(self, store: ImageStore, vms: VmTable, keeper: SnapshotKeeper) -> None:
        self.store = store
        self._vms = vms
        self._keeper = keeper
        self._build_lock = asyncio.Lock()
        self._builds: set[asyncio.Task[None]] = set()

    def list(self) -> builtins.list[Image]:
        return self.store.list()

    def get(self, ref: str) -> Image:
        """The image by name or id (prefix); NotFoundError with a sentence otherwise."""
        return self.store.get(ref)

    def users(self, image: Image, project: str | None = None) -> builtins.list[str]:
        """Names of the VMs booted or installed from ``image``, or with it in their CD-ROM
        drive (of one ``project`` only, when given)."""
        return [
            vm.name
            for vm in self._vms.list()
            if image.id in (vm.image_id, vm.media) and (project is None or vm.project == project)
        ]

    @staticmethod
    def recipes() -> builtins.list[str]:
        """Names of the images this daemon can build from Debian packages."""
        return sorted(RECIPES)

    async def remove(self, ref: str) -> None:
        """Remove an image nothing needs; ConflictError naming what does. Only ever the image
        ``ref`` names: when other names share its content (a store from before imports
        refused that), just the name ``ref`` goes and the content stays theirs."""
        image = self.store.get(ref)
        if len(self.store.names_of(image.id)) > 1:  # drops the name; refuses a shared id
            await asyncio.to_thread(self.store.remove, ref)
            return
        inserted = [vm.name for vm in self._vms.list() if vm.media == image.id]
        if inserted:
            raise ConflictError(
                f"The ISO {image.name or image.short_id} is in the CD-ROM drive of "
                f"{', '.join(inserted)}; eject it first (`bungalow media eject "
                f"{inserted[0]}`)."
            )
        users = self.users(image) + self._keeper.image_users(image.id)
        if users:
            raise ConflictError(
                f"The image {image.name} is used by {', '.join(users)}; remove "
                f"{'that' if len(users) == 1 else 'those'} first."
            )
        await self._keeper.retire_templates(image.id)
        await asyncio.to_thread(self.store.remove, ref)

    async def import_disk(
        self, path: Path, name: str, *, firmware: str = "bios", vars_file: Path | None = None
    ) -> Image:
        """Import a disk at ``path`` (on this host: raw, qcow2, vmdk, vdi, vhdx) as the image
        ``name``, booted by ``firmware``; ``vars_file``, its UEFI variable store, must be
        of that firmware (UserError: "a vars file from another firmware"). An ISO 9660
        medium (a file with its volume descriptor, whatever its name) becomes an ``iso``
        image (images/iso.py), whose firmware is chosen at launch; anything else is a disk
        as qemu-img reads it. The same content again is the same image only under its own
        name and settings; else ConflictError naming it (ImageStore.check_same)."""
        validate_name(name, what="image")
        if await asyncio.to_thread(iso.is_iso, path.expanduser()):
            if firmware != "bios" or vars_file is not None:
                raise UserError(
                    f"{path} is an ISO, booted with the firmware its VM is launched with; "
                    "import it without --firmware and --vars, and give `launch --iso` "
                    "--firmware instead."
                )
            return await asyncio.to_thread(iso.import_iso, self.store, path, name)
        await asyncio.to_thread(check_vars_for, firmware, vars_file)
        return await asyncio.to_thread(
            self.store.import_disk, path, name, firmware=firmware, vars_file=vars_file
        )

    def build(self, name: str, *, force: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Build ``name`` from its recipe: ``progress`` events (stage, fraction 0-1), then
        ``done`` (the image) or ``error`` (code, message)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def progress(stage: str, fraction: float) -> None:
            event = {"type": "progress", "stage": stage, "fraction": fraction}
            loop.call_soon_threadsafe(queue.put_nowait, event)

        async def run() -> None:
            try:
                async with self._build_lock:
                    image = await asyncio.to_thread(
                        build_image, self.store, name, force=force, progress=progress
                    )
                await queue.put({"type": "done", "image": image})
            except BungalowError as exc:
                await queue.put({"type": "error", "code": exc.code, "message": exc.message})
            except Exception as exc:
                message = f"Building {name} failed unexpectedly: {exc}."
                await queue.put({"type": "error", "code": "image_error", "message": message})

        task = asyncio.create_task(run())
        self._builds.add(task)
        task.add_done_callback(self._builds.discard)

        async def events() -> AsyncIterator[dict[str, Any]]:
            while True:
                event = await queue.get()
                yield event
                if event["type"] in ("done", "error"):
                    return

        return events()
