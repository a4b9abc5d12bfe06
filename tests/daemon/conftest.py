"""A real daemon object graph for the daemon's unit tests: no QEMU, no socket, no wait.

``daemon`` is what ``bungalowd`` builds (server/wiring.py ``build``) on a
temporary data directory, with a clock the test sets by hand and a host that
was never probed. Building it opens the database and nothing else: no VM
boots until a test asks for one, and these tests never do. The lifespan
(recovery, the reaper, metrics, the heartbeat) does not run: its wiring is
what the e2e tests prove.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.daemon.policies.actions import PolicyActions
from bungalow.daemon.policies.settings import Action
from bungalow.daemon.server.config import Config
from bungalow.daemon.server.wiring import Daemon, build
from bungalow.daemon.vms.host import HostFacts
from bungalow.errors import BungalowError
from bungalow.paths import DataDir
from bungalow.qemu.accel import HostProbe
from tests.daemon.records import T0, SetClock

#: A host whose accelerator was never probed (the daemon's probe runs a child for seconds).
UNPROBED = HostFacts(HostProbe(False, "not probed", None, None, 0.0), "QEMU 7.2.x")


def build_daemon(root: Path, clock: SetClock, config: Config | None = None) -> Daemon:
    """The daemon's services over the data directory ``root``, reading ``clock``."""
    data = DataDir(root)
    data.ensure()
    return build(data, config or Config(), UNPROBED, clock)


@pytest.fixture
def clock() -> SetClock:
    return SetClock(T0)


@pytest.fixture
def daemon(tmp_path: Path, clock: SetClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    # Images under the data directory: never the machine's shared store.
    monkeypatch.delenv("BUNGALOW_IMAGES", raising=False)
    built = build_daemon(tmp_path / "home", clock)
    yield built
    built.store.close()


class RecordedActions(PolicyActions):
    """Stands in for PolicyActions (which drives QEMU): notes what a policy asked of it, and
    fails for the VMs in ``failing`` as a busy VM would. Only ``perform`` is a policy's to
    call, so nothing of the real one is made."""

    def __init__(self) -> None:  # no super().__init__: no VM service, suspender or restorable
        self.done: list[tuple[str, Action]] = []
        self.failing: dict[str, BungalowError] = {}

    async def perform(self, name: str, action: Action) -> str:
        if name in self.failing:
            raise self.failing[name]
        self.done.append((name, Action(action)))
        return f"did {action}"


@pytest.fixture
def actions() -> RecordedActions:
    return RecordedActions()
