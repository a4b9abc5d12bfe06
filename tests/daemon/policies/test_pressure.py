"""Memory pressure's choice: who is ballooned, by how much, and when memory goes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.daemon.policies.pressure import (
    MIN_MOVE,
    Balloonable,
    Level,
    MemoryConfig,
    Move,
    load_memory,
    plan,
)
from bungalow.daemon.server.config import load_config
from bungalow.errors import UserError

MIB = 1 << 20
GIB = 1 << 30
LOW, HIGH = 2 * GIB, 4 * GIB


def vm(name: str, memory: int, floor: int | None, actual: int | None = None, idle: bool = False):
    return Balloonable(name, memory, floor, memory if actual is None else actual, idle)


def test_nothing_moves_between_the_lines() -> None:
    assert plan(3 * GIB, LOW, HIGH, [vm("a", 2 * GIB, 512 * MIB, actual=GIB)]) == []


def test_under_pressure_idle_vms_go_first_then_the_one_with_most_above_its_floor() -> None:
    vms = [
        vm("busy-big", 4 * GIB, 512 * MIB),
        vm("idle-small", GIB, 512 * MIB, idle=True),
        vm("idle-big", 2 * GIB, 512 * MIB, idle=True),
    ]
    # 1.5 GiB available: 2.5 GiB wanted to get back over HIGH.
    moves = plan(1536 * MIB, LOW, HIGH, vms)
    assert moves == [
        Move("idle-big", 2 * GIB, 512 * MIB, "pressure"),
        Move("idle-small", GIB, 512 * MIB, "pressure"),
        Move("busy-big", 4 * GIB, 4 * GIB - 512 * MIB, "pressure"),
    ]


def test_never_below_a_floor_and_never_a_vm_without_one() -> None:
    vms = [vm("floored", 2 * GIB, GIB), vm("free", 8 * GIB, None)]
    moves = plan(0, LOW, HIGH, vms)
    assert moves == [Move("floored", 2 * GIB, GIB, "pressure")]
    # Already at its floor: nothing more to take, however short the host is.
    assert plan(0, LOW, HIGH, [vm("floored", 2 * GIB, GIB, actual=GIB)]) == []


def test_only_what_is_needed_is_taken() -> None:
    moves = plan(LOW - MIB, LOW, HIGH, [vm("a", 8 * GIB, GIB), vm("b", 8 * GIB, GIB)])
    assert moves == [Move("a", 8 * GIB, 8 * GIB - (HIGH - LOW + MIB), "pressure")]


def test_when_the_pressure_is_gone_memory_goes_back_as_far_as_there_is_room() -> None:
    vms = [
        vm("a", 2 * GIB, 512 * MIB, actual=512 * MIB, idle=True),
        vm("b", GIB, 512 * MIB, actual=512 * MIB),
    ]
    # Room for 1 GiB over HIGH: the busy one first, then what is left to the idle one.
    moves = plan(HIGH + GIB, LOW, HIGH, vms)
    assert moves == [
        Move("b", 512 * MIB, GIB, "relief"),
        Move("a", 512 * MIB, GIB, "relief"),
    ]


def test_a_lifted_or_raised_floor_gives_memory_back_at_once() -> None:
    lifted = vm("lifted", 2 * GIB, None, actual=512 * MIB)
    raised = vm("raised", 2 * GIB, GIB, actual=512 * MIB)
    moves = plan(0, LOW, HIGH, [lifted, raised])
    assert moves[:2] == [
        Move("lifted", 512 * MIB, 2 * GIB, "floor"),
        Move("raised", 512 * MIB, GIB, "floor"),
    ]


def test_moves_are_whole_mib_and_not_tiny() -> None:
    moves = plan(LOW - 1, LOW, HIGH, [vm("a", GIB, GIB - MIN_MOVE + MIB)])
    assert moves == []
    moves = plan(LOW - 1, LOW, HIGH, [vm("a", GIB + 12345, 512 * MIB)])
    assert all(move.target % MIB == 12345 % MIB for move in moves)


def test_the_settings_parse_shares_and_sizes() -> None:
    config = load_memory(
        {"pressure_below": "5%", "relief_above": "15%", "pressure_interval": "10s"}, "c"
    )
    assert config.pressure_below.of(100 * GIB) == 5 * GIB
    assert config.relief_above.of(100 * GIB) == 15 * GIB
    assert config.pressure_interval == 10.0
    sizes = load_memory({"pressure_below": "2G", "relief_above": "4G", "balloon": False}, "c")
    assert sizes.pressure_below == Level(size=2 * GIB)
    assert not sizes.balloon
    assert load_memory({}, "c") == MemoryConfig()
    assert load_memory({"ksm": "auto"}, "c") == MemoryConfig()  # the KSM controller's key


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"pressure_below": "lots"}, "memory.pressure_below in c must be a share"),
        ({"pressure_below": "150%"}, "memory.pressure_below in c must be a share"),
        ({"pressure_below": "30%"}, "must be above memory.pressure_below"),
        ({"pressure_below": "2G"}, "both be shares"),
        ({"balloon": "yes"}, "memory.balloon in c must be true or false"),
        ({"pressure_interval": "0s"}, "from 1s to 1h"),
        ({"baloon": True}, "memory.baloon in c is not a setting"),
    ],
)
def test_bad_settings_are_one_sentence(table: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_memory(table, "c")


def test_the_daemon_config_reads_the_memory_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[memory]\nballoon = false\npressure_below = "5%"\n')
    config = load_config(path)
    assert not config.memory.balloon
    assert config.memory.pressure_below == Level(fraction=0.05)
    path.write_text('[memory]\npressure_below = "50%"\n')
    with pytest.raises(UserError, match="relief_above"):
        load_config(path)
