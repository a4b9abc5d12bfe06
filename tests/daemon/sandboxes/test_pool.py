"""The warm pool lapsing when nobody asks of it, on rows a test writes (no VM boots).

The store, the VM service's removal and the events are the daemon's own; the
daemon is built with ``pool = 0`` so that a claim starts no refill (which would
boot a clone): pooled rows an earlier ``pool = N`` left behind are exactly what
such a daemon finds. test_sandboxes_e2e.py shows a real pool lapse through the CLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.daemon.sandboxes.pool import Pool
from bungalow.daemon.server.config import Config
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import Operation, Purpose, SnapshotRecord
from bungalow.daemon.vms.requests import Ownership
from tests.daemon.conftest import build_daemon
from tests.daemon.records import GIB, T0, SetClock, put, vm

IDLE = 600.0
TEMPLATE = SnapshotRecord(
    id="t1", name="template-1", vm_id="", vm_name="template-debian-12", kind="full",
    purpose=Purpose.TEMPLATE, image_id="f" * 64, profile="micro", cpus=1, memory=GIB // 2,
    disk_size=4 * GIB, accel="tcg", qemu="7.2", digests={}, size=GIB, template_key="k",
)  # fmt: skip


@pytest.fixture
def daemon(tmp_path: Path, clock: SetClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    monkeypatch.delenv("BUNGALOW_IMAGES", raising=False)
    built = build_daemon(tmp_path / "home", clock, Config(sandbox_pool=0, sandbox_pool_idle=IDLE))
    yield built
    built.store.close()


def _pooled(daemon: Daemon, name: str, **changes: object) -> None:
    made = len(daemon.store.vms.list())
    record = vm(name, created=T0 + made, pool=TEMPLATE.id, owner=None, sandbox=True, **changes)
    put(daemon.store, record, VmState.RUNNING)


def _names(daemon: Daemon) -> set[str]:
    return {vm.name for vm in daemon.store.vms.list()}


async def test_a_pool_nobody_asks_of_lapses_after_its_idle_time(
    daemon: Daemon, clock: SetClock
) -> None:
    _pooled(daemon, "sb-1", expires_at=T0 + IDLE)
    clock.at = T0 + IDLE - 1
    assert await daemon.pool.lapse() == []
    clock.at = T0 + IDLE
    assert await daemon.pool.lapse() == ["sb-1"]
    assert _names(daemon) == set()
    (lapsed,) = daemon.store.events.query(vm="sb-1", kinds=("lapsed",))
    assert lapsed["actor"] == "policy pool"
    assert lapsed["message"] == (
        "the warm pool lapsed: no sandbox of its shape was asked for in 10m"
    )
    (removed,) = daemon.store.events.query(vm="sb-1", kinds=("removed",))
    assert removed["actor"] == "policy pool"  # the VM service's own event names who and why


async def test_each_ask_keeps_the_whole_pool_warm_and_the_claimed_vm_is_the_askers(
    daemon: Daemon, clock: SetClock
) -> None:
    pool: Pool = daemon.pool
    _pooled(daemon, "sb-a", expires_at=T0 + IDLE)
    _pooled(daemon, "sb-b", expires_at=T0 + IDLE)
    clock.at = T0 + 500
    claimed = pool.claim(TEMPLATE, T0 + 500 + 3600, Ownership(owner="alice"))
    assert claimed is not None and claimed.name == "sb-a"  # the oldest waiting
    assert (claimed.pool, claimed.expires_at, claimed.owner) == (None, T0 + 4100, "alice")
    assert daemon.store.vms.get("sb-b").expires_at == T0 + 500 + IDLE
    clock.at = T0 + 500 + IDLE - 1
    assert await pool.lapse() == []
    clock.at = T0 + 500 + IDLE
    assert await pool.lapse() == ["sb-b"]
    assert _names(daemon) == {"sb-a"}  # a sandbox in use is no pool's to lapse


async def test_an_ask_that_finds_the_pool_empty_still_keeps_what_is_being_made(
    daemon: Daemon, clock: SetClock
) -> None:
    _pooled(daemon, "sb-new", expires_at=T0 + IDLE)
    daemon.store.vms.begin(daemon.store.vms.get("sb-new").id, Operation.CREATE)
    clock.at = T0 + 300
    assert daemon.pool.claim(TEMPLATE, None, Ownership()) is None  # being made: not handed out
    assert daemon.store.vms.get("sb-new").expires_at == T0 + 300 + IDLE


async def test_a_pooled_vm_claimed_while_its_lapse_waited_for_the_lock_stays(
    daemon: Daemon, clock: SetClock
) -> None:
    _pooled(daemon, "sb-1", expires_at=T0 + IDLE)
    clock.at = T0 + IDLE
    async with daemon.vms.locked("sb-1"):  # busy: the lapse waits for the VM's lock
        lapse = asyncio.create_task(daemon.pool.lapse())
        for _ in range(10):
            await asyncio.sleep(0)
        assert not lapse.done()
        claimed = daemon.pool.claim(TEMPLATE, T0 + 2 * IDLE, Ownership(owner="bob"))
        assert claimed is not None
    assert await lapse == []
    assert _names(daemon) == {"sb-1"}
    assert daemon.store.events.query(vm="sb-1", kinds=("lapsed", "removed")) == []


async def test_a_pooled_row_from_before_pools_lapsed_goes_idle_after_it_was_made(
    daemon: Daemon, clock: SetClock
) -> None:
    _pooled(daemon, "sb-old")  # no deadline: made by a bungalowd that kept pools forever
    clock.at = T0 + IDLE - 1
    assert await daemon.pool.lapse() == []
    clock.at = T0 + IDLE
    assert await daemon.pool.lapse() == ["sb-old"]
