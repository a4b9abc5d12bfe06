"""The reaper's schedule: leases on every tick, idleness and retention once an interval.

Its collaborators are the daemon's own (leases, idleness, the deleted VMs'
retention) over a real store; the actions are recorded, so the idle VM below
is acted on again at every full tick, which is how the test counts them.
"""

from __future__ import annotations

import pytest

from bungalow.daemon.policies.idle import Idleness
from bungalow.daemon.policies.leases import Leases
from bungalow.daemon.policies.reaper import Reaper
from bungalow.daemon.policies.settings import Action, IdlePolicy, PolicyConfig
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.state.audit import ACTOR
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import DeletedVm
from tests.daemon.conftest import RecordedActions
from tests.daemon.records import T0, SetClock, put, vm

INTERVAL = 60.0
CONFIG = PolicyConfig(reaper_interval=INTERVAL, idle=IdlePolicy(after=600, action=Action.STOP))


@pytest.fixture
def reaper(daemon: Daemon, actions: RecordedActions, clock: SetClock) -> Reaper:
    leases = Leases(daemon.vms, actions, CONFIG, clock)
    idleness = Idleness(daemon.vms, lambda name: {"cpu": 0.01}, actions, CONFIG, clock)
    return Reaper(leases, idleness, daemon.services.restorable, clock, INTERVAL)


def _idle_actions(actions: RecordedActions) -> int:
    return actions.done.count(("quiet", Action.STOP))


async def test_leases_every_tick_idleness_once_an_interval(
    reaper: Reaper, daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    put(daemon.store, vm("quiet", created=T0 - 3600), VmState.RUNNING)
    await reaper.tick()
    assert _idle_actions(actions) == 1  # the first tick is a full one
    put(daemon.store, vm("sb", created=T0, sandbox=True, expires_at=T0 + 5), VmState.RUNNING)
    clock.at = T0 + 5
    await reaper.tick()
    assert ("sb", Action.DELETE) in actions.done  # the lease, to the second
    assert _idle_actions(actions) == 1  # idleness waits for its interval
    clock.at = T0 + INTERVAL - 0.5
    await reaper.tick()
    assert _idle_actions(actions) == 1
    clock.at = T0 + INTERVAL
    await reaper.tick()
    assert _idle_actions(actions) == 2


async def test_a_clock_set_back_does_not_stop_the_full_ticks(
    reaper: Reaper, daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    put(daemon.store, vm("quiet", created=T0 - 7200), VmState.RUNNING)
    await reaper.tick()
    clock.at = T0 - 1800  # a test clock, or the host's, moved back
    await reaper.tick()
    assert _idle_actions(actions) == 2


async def test_the_retention_ends_on_a_full_tick_under_the_retention_policy(
    reaper: Reaper, daemon: Daemon, clock: SetClock
) -> None:
    daemon.store.deleted.insert(DeletedVm("gone", "s1", None, T0 - 10, T0 + 30, {}))
    await reaper.tick()
    assert [d.name for d in daemon.store.deleted.list()] == ["gone"]
    clock.at = T0 + 30
    await reaper.tick()  # within the interval: not yet looked at
    assert [d.name for d in daemon.store.deleted.list()] == ["gone"]
    clock.at = T0 + INTERVAL
    await reaper.tick()
    assert daemon.store.deleted.list() == []
    (event,) = daemon.store.events.query(vm="gone", kinds=("retention-ended",))
    assert (event["actor"], event["reason"]) == ("policy retention", "its retention ended")


class Chore:
    """A chore another room hands the reaper (the pool's lapse, the disk-full resume): it
    counts its calls and the actor it ran as."""

    def __init__(self) -> None:
        self.actors: list[str] = []

    async def __call__(self) -> list[str]:
        self.actors.append(ACTOR.get())
        return []


async def test_pools_lapse_every_tick_and_held_vms_resume_once_an_interval(
    daemon: Daemon, actions: RecordedActions, clock: SetClock
) -> None:
    lapse, resume = Chore(), Chore()
    leases = Leases(daemon.vms, actions, CONFIG, clock)
    idleness = Idleness(daemon.vms, lambda name: {}, actions, CONFIG, clock)
    reaper = Reaper(
        leases, idleness, daemon.services.restorable, clock, INTERVAL,
        lapse_pools=lapse, resume_held=resume,
    )  # fmt: skip
    await reaper.tick()
    clock.at = T0 + 1
    await reaper.tick()
    assert (len(lapse.actors), len(resume.actors)) == (2, 1)
    clock.at = T0 + INTERVAL
    await reaper.tick()
    assert (len(lapse.actors), len(resume.actors)) == (3, 2)
    assert set(resume.actors) == {"policy disk-full"}
