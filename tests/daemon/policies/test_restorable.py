"""Deleted VMs that can come back: listing, finding, refusals and the end of the retention.

Everything here that needs no VM: the saves are rows and directories the test
writes, as snapshot-and-delete leaves them. Saving a real VM and bringing it
back is test_leases_e2e.py's.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from bungalow.daemon.policies.restorable import Restorable
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.records import DeletedVm, Purpose, SnapshotRecord
from bungalow.errors import ConflictError, NotFoundError
from tests.daemon.records import GIB, T0, SetClock, put, vm
from tests.support import free_port

DAY = 86400.0


def _restorable(daemon: Daemon) -> Restorable:
    return daemon.services.restorable


def _deleted(
    daemon: Daemon, name: str, snapshot_id: str, *, deleted: float = T0,
    keep_until: float = T0 + 7 * DAY, project: str | None = None, **record: Any,
) -> DeletedVm:  # fmt: skip
    """What snapshot-and-delete leaves: a detached save, its files, and the deleted_vms row."""
    daemon.store.snapshots.insert(
        SnapshotRecord(
            id=snapshot_id, name=f"deleted-{snapshot_id}", vm_id="", vm_name=name, kind="disk",
            purpose=Purpose.DELETED, image_id="f" * 64, profile="micro", cpus=1, memory=GIB,
            disk_size=4 * GIB, accel="tcg", qemu="7.2", digests={}, size=GIB,
        )
    )  # fmt: skip
    files = daemon.data.snapshot_dir(snapshot_id)
    files.mkdir(parents=True)
    (files / "disk.qcow2").write_bytes(b"saved")
    kept = {
        "owner": "alice", "labels": {}, "project": project, "limits": {}, "idle": {},
        "created_by": "admin", "origin": "image debian-12", "sandbox": False,
        "state": "running", "ports": [], **record,
    }  # fmt: skip
    row = DeletedVm(name, snapshot_id, project, deleted, keep_until, kept)
    daemon.store.deleted.insert(row)
    return row


def test_a_project_lists_and_finds_only_its_own(daemon: Daemon) -> None:
    _deleted(daemon, "mine", "s1", project="p1")
    _deleted(daemon, "theirs", "s2", project="p2")
    restorable = _restorable(daemon)
    assert [d.name for d in restorable.list()] == ["mine", "theirs"]
    assert [d.name for d in restorable.list("p1")] == ["mine"]
    assert restorable.find("mine", "p1").snapshot == "s1"
    with pytest.raises(NotFoundError, match="no deleted VM named theirs to restore"):
        restorable.find("theirs", "p1")


def test_find_gives_the_latest_of_a_name(daemon: Daemon) -> None:
    _deleted(daemon, "web", "new", deleted=T0 + DAY)
    _deleted(daemon, "web", "old", deleted=T0)
    assert _restorable(daemon).find("web").snapshot == "new"


async def test_the_retention_ends_with_the_save_and_its_files(
    daemon: Daemon, clock: SetClock
) -> None:
    _deleted(daemon, "short", "s1", keep_until=T0 + DAY)
    _deleted(daemon, "long", "s2", keep_until=T0 + 7 * DAY)
    restorable = _restorable(daemon)
    assert await restorable.expire() == []
    clock.at = T0 + DAY
    assert await restorable.expire() == ["short"]
    assert [d.name for d in restorable.list()] == ["long"]
    assert daemon.store.snapshots.by_id("s1") is None
    assert not daemon.data.snapshot_dir("s1").exists()
    assert daemon.data.snapshot_dir("s2").exists()
    (event,) = daemon.store.events.query(vm="short", kinds=("retention-ended",))
    assert event["message"] == "its save was deleted; it cannot be restored now"
    with pytest.raises(NotFoundError, match="no deleted VM named short"):
        restorable.find("short")


async def test_a_save_a_vm_stands_on_outlives_the_retention(
    daemon: Daemon, clock: SetClock
) -> None:
    _deleted(daemon, "web", "s1", keep_until=T0 + DAY)
    put(daemon.store, vm("clone", base_snapshot="s1"))
    clock.at = T0 + 2 * DAY
    assert await _restorable(daemon).expire() == ["web"]
    assert _restorable(daemon).list() == []  # it cannot be restored any more...
    assert daemon.store.snapshots.by_id("s1") is not None  # ...but its clone still needs it
    assert daemon.data.snapshot_dir("s1").exists()


async def test_restore_refuses_a_name_taken_again_or_a_save_that_is_gone(
    daemon: Daemon,
) -> None:
    _deleted(daemon, "web", "s1")
    put(daemon.store, vm("web"))
    with pytest.raises(ConflictError, match="A VM named web exists again"):
        await _restorable(daemon).restore("web")
    _deleted(daemon, "lost", "s2")
    daemon.store.snapshots.delete("s2")
    with pytest.raises(NotFoundError, match="saved state of the deleted VM lost is gone"):
        await _restorable(daemon).restore("lost")
    with pytest.raises(NotFoundError, match="no deleted VM named ghost"):
        await _restorable(daemon).restore("ghost")


async def test_restore_refuses_a_host_port_another_program_took(daemon: Daemon) -> None:
    port = free_port()
    _deleted(daemon, "web", "s1", ports=[f"127.0.0.1:{port}:22/tcp"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(ConflictError) as refused:
            await _restorable(daemon).restore("web")
    assert refused.value.message == (
        f"The deleted VM web forwarded host ports that are taken now (Host port {port}/tcp "
        "is already in use); free the port and restore it again."
    )
    assert daemon.store.vms.list() == []
    assert [d.name for d in _restorable(daemon).list()] == ["web"]  # still there to restore


async def test_a_save_kept_for_a_clone_goes_with_the_clone(daemon: Daemon, clock: SetClock) -> None:
    _deleted(daemon, "web", "s1", keep_until=T0 + DAY)
    clone = put(daemon.store, vm("clone", base_snapshot="s1"))
    clock.at = T0 + 2 * DAY
    await _restorable(daemon).expire()
    daemon.store.vms.delete(clone.id)  # the VM service removes it, then lets the keeper collect
    await daemon.keeper.collect()
    assert daemon.store.snapshots.by_id("s1") is None
    assert not daemon.data.snapshot_dir("s1").exists()
