"""Where snapshots live and when they go.

A snapshot is kept while any VM or snapshot disk is layered on it. When its VM
is removed it stays, detached (an empty ``vm_id``), until the last clone built
on it goes; :meth:`SnapshotKeeper.collect` then deletes it, and with it any
base it alone held. Sandbox templates of the current shape and the saves of
deleted VMs (policies/restorable.py) are kept on purpose.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import shutil
from pathlib import Path

from bungalow.daemon.snapshots import files as snapshot_files
from bungalow.daemon.state.records import Purpose, SnapshotRecord, VmRecord
from bungalow.daemon.state.store import Store
from bungalow.errors import ConflictError
from bungalow.paths import DataDir

log = logging.getLogger(__name__)


class SnapshotKeeper:
    """Snapshots' directories, and deleting those nothing needs any more."""

    def __init__(self, store: Store, data: DataDir) -> None:
        self.store = store
        self.data = data

    def directory(self, snapshot: SnapshotRecord) -> Path:
        return self.data.snapshot_dir(snapshot.id)

    def refuse_if_used(self, snapshot: SnapshotRecord) -> None:
        """ConflictError naming what stands on ``snapshot``, if anything does."""
        users = self.store.snapshots.dependents(snapshot.id)
        if users:
            raise ConflictError(
                f"{snapshot_files.label(snapshot)} is the base of {', '.join(users)}; "
                "remove those first."
            )

    async def discard(self, snapshot: SnapshotRecord) -> None:
        """Delete a snapshot nothing stands on (the caller has checked): row, then files."""
        self.store.snapshots.delete(snapshot.id)
        await asyncio.to_thread(shutil.rmtree, self.directory(snapshot), True)

    async def vm_removed(self, vm: VmRecord) -> None:
        """A VM is gone: its snapshots go too, except those clones still stand on."""
        for snapshot in self.store.snapshots.list(vm.id):
            if self.store.snapshots.dependents(snapshot.id):
                self.store.snapshots.detach(snapshot.id)
            else:
                await self.discard(snapshot)
        await self.collect()

    async def collect(self) -> None:
        """Delete detached snapshots (fork ones, or of removed VMs) nothing stands on any more.

        Deleting one can free its own base, so this repeats until nothing changes.
        """
        while True:
            removed = False
            for snapshot in self.store.snapshots.list(""):
                current = snapshot.purpose is Purpose.TEMPLATE and snapshot.template_key
                # A deleted VM's way back is kept until its retention ends (restorable.py).
                if (
                    current
                    or snapshot.purpose is Purpose.DELETED
                    or self.store.snapshots.dependents(snapshot.id)
                ):
                    continue
                await self.discard(snapshot)
                removed = True
            if not removed:
                return

    async def retire_templates(self, image_id: str) -> None:
        """The image is going: its sandbox templates go (or wait for their last sandbox)."""
        for snapshot in self.store.snapshots.list("", purpose=Purpose.TEMPLATE):
            if snapshot.image_id == image_id:
                self.store.snapshots.retire_template(snapshot.id)
        await self.collect()

    def image_users(self, image_id: str) -> builtins.list[str]:
        """User snapshots that need this image, to boot from or as the ISO in their VM's
        CD-ROM drive (templates are remade, not kept)."""
        snapshots = self.store.snapshots
        return [
            f"snapshot {s.name} of {s.vm_name}"
            for s in snapshots.list()
            if image_id in (s.image_id, s.media) and s.purpose is not Purpose.TEMPLATE
        ] + [
            f"sandbox template {s.id} (used by {', '.join(snapshots.dependents(s.id))})"
            for s in snapshots.list("", purpose=Purpose.TEMPLATE)
            if s.image_id == image_id and snapshots.dependents(s.id)
        ]

    def orphan_directories(self) -> builtins.list[Path]:
        """Snapshot directories no row names: captures a killed daemon left half done."""
        if not self.data.snapshots.exists():
            return []
        known = {snapshot.id for snapshot in self.store.snapshots.list()}
        return [d for d in sorted(self.data.snapshots.iterdir()) if d.name not in known]
