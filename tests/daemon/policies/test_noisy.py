"""The noisy-neighbour arithmetic: who waits, who is the offender, what cap holds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.daemon.policies.noisy import (
    MIN_DISK_IOPS,
    NoisyConfig,
    cpu_offences,
    disk_offences,
    load_noisy,
    tighter,
)
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms.limits import Limits
from bungalow.errors import UserError


def _vm(name: str, cpus: int = 1, weight: int = 100) -> VmRecord:
    return VmRecord(
        id=name, name=name, state=VmState.RUNNING, image_id="i", image_name="i",
        profile="micro", cpus=cpus, memory=512 << 20, disk_size=4 << 30,
        limits={"cpu_weight": weight},
    )  # fmt: skip


def _disk(reqs: float, ms_each: float, bytes_: float = 0.0) -> dict[str, float]:
    return {
        "block_wr_reqs": reqs, "block_wr_times": reqs * ms_each * 1e6,
        "block_wr_bytes": bytes_, "block_rd_bytes": 0.0, "cpu": 0.1, "steal": 0.0,
    }  # fmt: skip


def test_a_vm_issuing_most_disk_requests_while_another_waits_is_the_offender() -> None:
    vms = {"hog": _vm("hog"), "db": _vm("db")}
    current = {"hog": _disk(900, 2.0, 90e6), "db": _disk(100, 40.0, 1e6)}
    offences, waiting = disk_offences(current, vms, NoisyConfig(disk_wait=0.020))
    assert waiting == ["db"] and list(offences) == ["hog"]
    assert offences["hog"].resource == "disk"
    assert offences["hog"].cap == {"disk_iops": 500, "disk_bw": int(91e6 / 2)}
    assert "db wait for the disk" in offences["hog"].message


def test_no_offender_when_nobody_waits_or_the_load_is_shared() -> None:
    vms = {"a": _vm("a"), "b": _vm("b")}
    calm = {"a": _disk(900, 2.0), "b": _disk(100, 5.0)}
    assert disk_offences(calm, vms, NoisyConfig(disk_wait=0.020)) == ({}, [])
    shared = {"a": _disk(400, 30.0), "b": _disk(400, 30.0)}
    offences, waiting = disk_offences(shared, vms, NoisyConfig(disk_wait=0.020))
    assert offences == {} and waiting == ["a", "b"]


def test_a_heavier_weight_earns_a_bigger_automatic_disk_share() -> None:
    vms = {"hog": _vm("hog", weight=300), "db": _vm("db", weight=100)}
    current = {"hog": _disk(900, 2.0), "db": _disk(100, 40.0)}
    offences, _ = disk_offences(current, vms, NoisyConfig())
    assert offences["hog"].cap["disk_iops"] == 750


def test_cpu_offender_is_capped_at_its_entitlement() -> None:
    vms = {"hog": _vm("hog", cpus=2), "web": _vm("web", cpus=1)}
    current = {
        "hog": {"cpu": 1.5, "steal": 0.5},
        "web": {"cpu": 0.5, "steal": 0.5},
    }
    offences, waiting = cpu_offences(current, vms, 2.0, NoisyConfig())
    assert waiting == ["hog", "web"]  # both wait; only the hog takes more than promised
    assert list(offences) == ["hog"] and offences["hog"].cap == {"cpu_cap": 1.0}
    assert "promised 1.00, while web wait" in offences["hog"].message


def test_a_small_vm_whose_few_cpu_seconds_wait_counts_as_waiting() -> None:
    vms = {"hog": _vm("hog", cpus=2), "db": _vm("db", cpus=1)}
    current = {"hog": {"cpu": 1.5, "steal": 0.5}, "db": {"cpu": 0.4, "steal": 0.12}}
    offences, waiting = cpu_offences(current, vms, 2.0, NoisyConfig())
    assert "db" in waiting and offences["hog"].cap == {"cpu_cap": 1.0}
    quiet = {"hog": {"cpu": 1.5, "steal": 0.05}, "db": {"cpu": 0.4, "steal": 0.01}}
    assert cpu_offences(quiet, vms, 2.0, NoisyConfig()) == ({}, [])


def test_a_heavier_cpu_weight_is_promised_more() -> None:
    vms = {"big": _vm("big", cpus=2, weight=300), "small": _vm("small", cpus=2, weight=100)}
    current = {"big": {"cpu": 1.4, "steal": 0.6}, "small": {"cpu": 0.6, "steal": 1.4}}
    offences, _ = cpu_offences(current, vms, 2.0, NoisyConfig())
    assert offences == {}  # 1.4 CPUs is within big's promised 1.5


def test_automatic_caps_only_ever_tighten_a_vms_own_limits() -> None:
    own = Limits(disk_iops=100, cpu_cap=0.5)
    held = tighter(own, {"disk_iops": 400, "disk_bw": 5 << 20, "cpu_cap": 0.25})
    assert (held.disk_iops, held.disk_bw, held.cpu_cap) == (100, 5 << 20, 0.25)
    assert MIN_DISK_IOPS > 0


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"policy": "maybe"}, "off or throttle"),
        ({"disk_wait": "soon"}, "not a duration"),
        ({"disk_wait": 0}, "positive"),
        ({"steal": 2}, "fraction"),
        ({"samples": 0}, "whole number"),
        ({"loud": 1}, "not a setting"),
    ],
)
def test_bad_noisy_settings_are_one_sentence(table: dict[str, object], words: str) -> None:
    with pytest.raises(UserError, match=words):
        load_noisy(table, Path("config.toml"))


def test_noisy_settings_parse() -> None:
    config = load_noisy({"policy": "throttle", "disk_wait": "5ms", "calm": 4}, "x")
    assert config == NoisyConfig(policy="throttle", disk_wait=0.005, calm=4)
