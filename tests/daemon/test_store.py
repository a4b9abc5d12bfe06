from pathlib import Path

import pytest

from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.store import Store, VmRecord
from bungalow.errors import ConflictError, NotFoundError


def _vm(name: str = "web", vm_id: str = "abc123") -> VmRecord:
    return VmRecord(
        id=vm_id,
        name=name,
        state=VmState.CREATED,
        image_id="f" * 64,
        image_name="debian-12",
        profile="micro",
        cpus=1,
        memory=512 << 20,
        disk_size=4 << 30,
        ports=["127.0.0.1:8080:80/tcp"],
    )


def test_records_survive_reopening_the_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    store.insert(_vm())
    store.update(store.get("web").with_changes(state=VmState.RUNNING, pid=42))
    store.add_event("web", "started", "started")
    store.close()
    again = Store(tmp_path / "db")
    vm = again.get("web")
    assert vm.state is VmState.RUNNING
    assert vm.pid == 42
    assert vm.ports == ["127.0.0.1:8080:80/tcp"]
    assert again.events("web")[0]["kind"] == "started"


def test_duplicate_names_conflict(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    store.insert(_vm())
    with pytest.raises(ConflictError, match="already exists"):
        store.insert(_vm(vm_id="other"))


def test_missing_vm_is_not_found(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    with pytest.raises(NotFoundError, match="bungalow ls"):
        store.get("ghost")
    store.insert(_vm())
    store.delete("abc123")
    assert store.find("web") is None


def test_database_uses_wal(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
