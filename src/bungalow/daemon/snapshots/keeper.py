"""Where snapshots live and when they go.

A snapshot is kept while any VM or snapshot disk is layered on it. When its VM
is removed it stays, detached (an empty ``vm_id``), until the last clone built
on it goes; :meth:`SnapshotKeeper.collect` then deletes it, and with it any
base it alone held. Sandbox templates of the current shape and the saves of
deleted VMs (restorable.py) are kept on purpose. A snapshot directory no row
names is a capture a killed daemon left half done, swept at start.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import shutil
from pathlib import Path

from bungalow.daemon.snapshots import files as snapshot_files
from bungalow.daemon.state.store import SnapshotRecord, VmRecord
from bungalow.daemon.vms.manager import VmManager, kill_leftover
from bungalow.errors import ConflictError

log = logging.getLogger(__name__)


class SnapshotKeeper:
    """Snapshots' directories, and deleting those nothing needs any more."""

    def __init__(self, manager: VmManager) -> None:
        self.m = manager
        self.store = manager.store
        manager.on_removed = self._vm_removed

    def directory(self, snapshot: SnapshotRecord) -> Path:
        return self.m.data.snapshot_dir(snapshot.id)

    def _refuse_if_used(self, snapshot: SnapshotRecord) -> None:
        users = self.store.snapshot_dependents(snapshot.id)
        if users:
            raise ConflictError(
                f"{snapshot_files.label(snapshot)} is the base of {', '.join(users)}; "
                "remove those first."
            )

    async def discard(self, snapshot: SnapshotRecord) -> None:
        """Delete a snapshot nothing stands on (the caller has checked)."""
        await self._delete(snapshot)

    async def _delete(self, snapshot: SnapshotRecord) -> None:
        self.store.delete_snapshot(snapshot.id)
        await asyncio.to_thread(shutil.rmtree, self.directory(snapshot), True)

    async def _vm_removed(self, vm: VmRecord) -> None:
        """A VM is gone: its snapshots go too, except those clones still stand on."""
        for snapshot in self.store.snapshots(vm.id):
            if self.store.snapshot_dependents(snapshot.id):
                self.store.update_snapshot(snapshot.with_changes(vm_id=""))
            else:
                await self._delete(snapshot)
        await self.collect()

    async def sweep(self) -> None:
        """Snapshot directories no row names are captures a killed daemon left half done."""
        known = {snapshot.id for snapshot in self.store.snapshots()}
        if not self.m.data.snapshots.exists():
            return
        for directory in self.m.data.snapshots.iterdir():
            if directory.name not in known:
                await kill_leftover(directory / "convert")
                await asyncio.to_thread(shutil.rmtree, directory, True)
                log.info("removed the leftover snapshot directory %s", directory.name)

    async def collect(self) -> None:
        """Delete detached snapshots (fork ones, or of removed VMs) nothing stands on any more.

        Deleting one can free its own base, so this repeats until nothing changes.
        """
        while True:
            removed = False
            for snapshot in self.store.snapshots(""):
                current = snapshot.purpose == "template" and snapshot.template_key is not None
                # A deleted VM's way back is kept until its retention ends (restorable.py).
                if (
                    current
                    or snapshot.purpose == "deleted"
                    or self.store.snapshot_dependents(snapshot.id)
                ):
                    continue
                await self._delete(snapshot)
                removed = True
            if not removed:
                return

    async def retire_templates(self, image_id: str) -> None:
        """The image is going: its sandbox templates go (or wait for their last sandbox)."""
        for snapshot in self.store.snapshots("", purpose="template"):
            if snapshot.image_id == image_id:
                self.store.update_snapshot(snapshot.with_changes(template_key=None))
        await self.collect()

    def image_users(self, image_id: str) -> builtins.list[str]:
        """User snapshots that need this image (templates are remade, not kept)."""
        return [
            f"snapshot {s.name} of {s.vm_name}"
            for s in self.store.snapshots()
            if s.image_id == image_id and s.purpose != "template"
        ] + [
            f"sandbox template {s.id} (used by {', '.join(self.store.snapshot_dependents(s.id))})"
            for s in self.store.snapshots("", purpose="template")
            if s.image_id == image_id and self.store.snapshot_dependents(s.id)
        ]
