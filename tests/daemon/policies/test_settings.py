"""The sprawl policies' settings and the pure rules under them (no VM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.daemon.policies.idle import IdleVm, busy
from bungalow.daemon.policies.settings import IdlePolicy, PolicyConfig, idle_changes
from bungalow.daemon.server.config import load_config
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.errors import UserError


def _load(tmp_path: Path, text: str) -> PolicyConfig:
    (tmp_path / "config.toml").write_text(text)
    return load_config(tmp_path / "config.toml").policy


def test_defaults_when_nothing_is_configured(tmp_path: Path) -> None:
    policy = load_config(tmp_path / "absent.toml").policy
    assert policy == PolicyConfig()
    assert (policy.warn_before, policy.on_expiry, policy.idle.action) == (600.0, "stop", "none")


def test_every_section_is_read(tmp_path: Path) -> None:
    policy = _load(
        tmp_path,
        '[reaper]\ninterval = "0.5s"\nretention = "2d"\n'
        '[leases]\nwarn_before = "5m"\ngrace = "3s"\non_expiry = "suspend"\n'
        '[idle]\nafter = "30m"\naction = "stop"\ncpu = "10%"\ndisk = "1M"\nnet = 2048\n'
        '[sprawl]\nstopped_after = "3d"\nowners = "local-users"\nidle_action = "stop"\n',
    )
    assert (policy.reaper_interval, policy.retention) == (0.5, 2 * 86400)
    assert (policy.warn_before, policy.grace, policy.on_expiry) == (300, 3, "suspend")
    assert policy.idle == IdlePolicy(after=1800, action="stop", cpu=0.1, disk=1 << 20, net=2048)
    assert (policy.stopped_after, policy.owners, policy.idle_action) == (3 * 86400, "local-users",
                                                                          "stop")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[leases]\non_expiry = "explode"\n', "leases.on_expiry"),
        ('[leases]\nwarn_before = "soon"\n', "leases.warn_before"),
        ('[reaper]\ninterval = "0s"\n', "reaper.interval"),
        ('[idle]\ncpu = "lots"\n', "idle.cpu"),
        ("[idle]\nbogus = 1\n", "'bogus'"),
        ('[sprawl]\nowners = "everyone"\n', "sprawl.owners"),
        ('[sprawl]\nstopped_action = "none"\n', "sprawl.stopped_action"),
    ],
)
def test_a_bad_value_is_one_sentence_naming_it(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(UserError, match=named) as caught:
        _load(tmp_path, text)
    assert caught.value.message.count(". ") == 0 and caught.value.message.endswith(".")


def test_idle_changes_parse_user_units() -> None:
    assert idle_changes({"after": "30m", "action": "suspend", "cpu": "5%", "disk": "64K",
                         "net": None}) == {"after": 1800.0, "action": "suspend", "cpu": 0.05,
                                           "disk": 65536.0}  # fmt: skip
    for bad in ({"after": "-1h"}, {"action": "nap"}, {"cpu": "x%"}, {"disk": "fast"}):
        with pytest.raises(UserError):
            idle_changes(bad)


def test_a_project_and_a_vm_policy_overlay_the_defaults_in_order() -> None:
    policy = IdlePolicy().overlaid({"after": 600.0, "action": "stop"}).overlaid({"after": 60.0})
    assert (policy.after, policy.action, policy.cpu) == (60.0, "stop", 0.05)


def test_busy_means_any_signal_above_its_threshold() -> None:
    policy = IdlePolicy()
    idle_guest = {"cpu": 0.015, "block_rd_bytes": 0.0, "block_wr_bytes": 0.0, "net_rx_bytes": 0.0}
    assert not busy(idle_guest, policy)  # 1.5% of a CPU: what an idle TCG guest costs here
    assert busy({**idle_guest, "cpu": 0.9}, policy)
    assert busy({**idle_guest, "block_wr_bytes": 1e6}, policy)
    assert busy({**idle_guest, "net_rx_bytes": 1e5}, policy)


def test_only_a_vm_of_its_own_accord_is_deleted_for_idleness() -> None:
    vm = VmRecord(id="a", name="a", state=VmState.RUNNING, image_id="i", image_name="i",
                  profile="micro", cpus=1, memory=1 << 29, disk_size=1 << 32)  # fmt: skip
    delete, stop = IdlePolicy(action="delete"), IdlePolicy(action="stop")
    assert IdleVm(vm, delete, 0.0, "vm").automatic
    assert not IdleVm(vm, delete, 0.0, "project").automatic  # listed; `sprawl --apply` does it
    assert not IdleVm(vm, delete, 0.0, "config").automatic
    assert IdleVm(vm, stop, 0.0, "config").automatic
    assert not IdleVm(vm, IdlePolicy(), 0.0, "config").automatic  # action none: only listed
