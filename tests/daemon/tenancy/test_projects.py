"""Projects on a real store: tokens, quota changes, removal with or without orphans, and the
quota check admission asks before a VM is made or started."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.store import Store
from bungalow.daemon.tenancy.projects import Projects
from bungalow.errors import CapacityError, ConflictError, InvalidNameError, NotFoundError
from tests.daemon.records import GIB, T0, open_store, put, vm


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "db")


@pytest.fixture
def projects(store: Store) -> Projects:
    return Projects(store)


def test_a_project_keeps_only_its_tokens_hash(projects: Projects, store: Store) -> None:
    project, token = projects.create("team-a", max_vcpus=4)
    assert token.startswith("bgw_") and len(token) > 30
    assert project.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert (project.name, project.max_vcpus, project.max_vms, project.created) == (
        "team-a", 4, None, T0,
    )  # fmt: skip
    assert projects.resolve(token) == project
    assert projects.resolve(token + "x") is None
    assert projects.resolve(project.token_hash) is None  # the hash is no token
    (event,) = store.events.query(kinds=("project-created",))
    assert (event["vm"], event["subject"]) == (None, "team-a")


def test_names_are_checked_and_unique(projects: Projects) -> None:
    projects.create("p1")
    with pytest.raises(ConflictError, match="A project named p1 already exists"):
        projects.create("p1")
    with pytest.raises(InvalidNameError, match="The project name 'Team A' is not valid"):
        projects.create("Team A")
    assert [p.name for p in projects.list()] == ["p1"]


def test_change_sets_the_quotas_given_and_merges_the_idle_policy(
    projects: Projects, store: Store
) -> None:
    projects.create("p1", max_vcpus=4, max_vms=2)
    changed = projects.change("p1", {"max_memory": 8 * GIB}, {"after": 7200.0})
    assert (changed.max_vcpus, changed.max_memory, changed.max_vms) == (4, 8 * GIB, 2)
    changed = projects.change("p1", {"max_vms": None}, {"action": "stop"})
    assert changed.max_vms is None
    assert changed.idle == {"after": 7200.0, "action": "stop"}
    assert projects.get("p1") == changed
    assert [e["subject"] for e in store.events.query(kinds=("project-idle",))] == ["p1", "p1"]
    with pytest.raises(NotFoundError, match="no project named nope"):
        projects.change("nope", {"max_vms": 1}, {})


def test_a_project_with_vms_is_removed_only_leaving_them_orphans(
    projects: Projects, store: Store
) -> None:
    _, token = projects.create("p1")
    put(store, vm("a", project="p1"))
    put(store, vm("b", project="p1"))
    put(store, vm("other", project="p2"))
    with pytest.raises(ConflictError) as refused:
        projects.remove("p1")
    assert refused.value.message == (
        "The project p1 still has VMs (a, b); remove them first, or keep them as orphans "
        "with `bungalow project rm p1 --orphan-vms`."
    )
    assert projects.get("p1").name == "p1"
    projects.remove("p1", orphan_vms=True)
    assert projects.list() == [] and projects.resolve(token) is None
    assert sorted(v.name for v in store.vms.list() if v.project == "p1") == ["a", "b"]
    assert store.events.last(("project-removed",), subject="p1") == T0
    with pytest.raises(NotFoundError, match="no project named p1"):
        projects.remove("p1")


def test_usage_counts_cpus_and_memory_of_active_vms_and_every_disk(
    projects: Projects, store: Store
) -> None:
    projects.create("p1")
    put(store, vm("up", project="p1", cpus=2, memory=GIB, disk_size=10 * GIB), VmState.RUNNING)
    put(store, vm("off", project="p1", cpus=4, memory=GIB, disk_size=5 * GIB), VmState.STOPPED)
    put(store, vm("else", project="p2", cpus=8), VmState.RUNNING)
    held, count = projects.usage("p1")
    assert (held.cpus, held.memory, held.disk, count) == (2, GIB, 15 * GIB, 2)
    held, count = projects.usage("p1", exclude="up")
    assert (held.cpus, held.disk, count) == (0, 5 * GIB, 1)


def test_a_new_vm_must_fit_every_quota(projects: Projects, store: Store) -> None:
    projects.create("p1", max_vcpus=4, max_memory=4 * GIB, max_disk=20 * GIB, max_vms=3)
    put(store, vm("up", project="p1", cpus=3, memory=GIB, disk_size=10 * GIB), VmState.RUNNING)
    projects.check(vm("fits", project="p1", cpus=1, memory=3 * GIB, disk_size=10 * GIB), False)
    for new, says in (
        (vm("cpu", project="p1", cpus=2, memory=GIB, disk_size=GIB),
         "The project p1's vCPUs quota is 4: asked for 2, 1 left; stop or remove one of its VMs"),
        (vm("mem", project="p1", cpus=1, memory=4 * GIB, disk_size=GIB),
         "The project p1's memory quota is 4G: asked for 4G, 3G left"),
        (vm("disk", project="p1", cpus=1, memory=GIB, disk_size=11 * GIB),
         "The project p1's disk quota is 20G: asked for 11G, 10G left"),
    ):  # fmt: skip
        with pytest.raises(CapacityError, match=says):
            projects.check(new, False)
    put(store, vm("two", project="p1", cpus=1, memory=GIB, disk_size=GIB), VmState.STOPPED)
    put(store, vm("three", project="p1", cpus=1, memory=GIB, disk_size=GIB), VmState.STOPPED)
    with pytest.raises(CapacityError, match="reached its quota of 3 VMs; remove one first"):
        projects.check(vm("four", project="p1", cpus=1, memory=GIB, disk_size=GIB), False)


def test_starting_counts_cpus_and_memory_but_neither_the_count_nor_the_disk(
    projects: Projects, store: Store
) -> None:
    projects.create("p1", max_vcpus=2, max_disk=GIB, max_vms=1)
    parked = put(store, vm("parked", project="p1", cpus=2, disk_size=8 * GIB), VmState.STOPPED)
    projects.check(parked, True)  # its disk is there already; it is the one VM
    put(store, vm("up", project="p1", cpus=1, disk_size=GIB), VmState.RUNNING)
    with pytest.raises(CapacityError, match="vCPUs quota is 2: asked for 2, 1 left"):
        projects.check(parked, True)


def test_vms_without_a_project_or_whose_project_is_gone(projects: Projects, store: Store) -> None:
    projects.check(vm("admins", cpus=64), False)  # the admin's: no quota
    orphan = put(store, vm("orphan", project="removed", cpus=64))
    projects.check(orphan, True)  # an orphan still starts: no quota of a gone project applies
    with pytest.raises(NotFoundError, match="no project named removed"):
        projects.check(vm("new", project="removed"), False)  # but nothing new joins it
