"""The VM side of private networks, as pure logic: choices, boot words, the agent's NIC list."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from bungalow.cli.vms import network_choices
from bungalow.daemon.networks.nic import Nic
from bungalow.daemon.vms.boot import boot_sets_network, with_cmdline
from bungalow.daemon.vms.nics import (
    NetworkChoice,
    boot_config,
    check_choices,
    guest_nics,
    machine_nics,
)
from bungalow.errors import InvalidNameError, UserError
from bungalow.qemu.argv import HOTPLUG_WORD, MIB, MachineSpec, kernel_cmdline

BACKEND = Nic("backend", "bgl1", "0e:b6:00:00:00:01", IPv4Interface("10.20.0.5/24"),
              IPv4Address("10.20.0.1"), "backend", 0)  # fmt: skip
FRONT = Nic("front", "bgl2", "52:54:00:00:00:02", IPv4Interface("10.30.0.9/24"),
            IPv4Address("10.30.0.1"), "front", 1)  # fmt: skip


def spec(tmp_path: Path) -> MachineSpec:
    return MachineSpec(
        name="web", cpus=1, memory=256 * MIB, profile="micro", disk=tmp_path / "d.qcow2",
        kernel=tmp_path / "k", initrd=tmp_path / "i", accel="tcg", run_dir=tmp_path / "run",
        tsc_khz=0,
    )  # fmt: skip


def test_network_choices_parse() -> None:
    assert NetworkChoice.parse("backend") == NetworkChoice("backend")
    assert NetworkChoice.parse("backend:10.20.0.5") == NetworkChoice(
        "backend", IPv4Address("10.20.0.5")
    )
    assert str(NetworkChoice.parse("backend:10.20.0.5")) == "backend:10.20.0.5"
    with pytest.raises(UserError, match="not an IPv4 address"):
        NetworkChoice.parse("backend:10.20.0.500")
    with pytest.raises(InvalidNameError, match="network name"):
        NetworkChoice.parse("Back_End")
    with pytest.raises(UserError, match="NAME or NAME:ADDRESS"):
        NetworkChoice.parse("a:b:c")


def test_a_network_twice_or_too_many_are_refused() -> None:
    check_choices([NetworkChoice("a"), NetworkChoice("b")])
    with pytest.raises(UserError, match="given twice"):
        check_choices([NetworkChoice("a"), NetworkChoice("a")])
    with pytest.raises(UserError, match="at most 10"):
        check_choices([NetworkChoice(f"n{i}") for i in range(11)])


def test_the_cli_joins_ip_to_the_first_network() -> None:
    assert network_choices(["a", "b"], "10.0.0.5") == ["a:10.0.0.5", "b"]
    assert network_choices(["a"], None) == ["a"]
    with pytest.raises(UserError, match="add --network"):
        network_choices([], "10.0.0.5")
    with pytest.raises(UserError, match="give it once"):
        network_choices(["a:10.0.0.4"], "10.0.0.5")
    with pytest.raises(UserError, match="--ip banana is not an IPv4 address"):
        network_choices(["a"], "banana")


def test_the_first_nic_is_configured_at_boot_and_every_nic_by_the_agent(tmp_path: Path) -> None:
    made = machine_nics(spec(tmp_path), [FRONT, BACKEND])
    assert [nic.id for nic in made.nics] == ["nic0", "nic1"]
    assert made.net == boot_config([FRONT, BACKEND])
    words = kernel_cmdline(made).split()
    assert {"bungalow.ip=10.20.0.5/24", "bungalow.dns=10.20.0.1", "bungalow.search=backend,front",
            HOTPLUG_WORD} <= set(words)  # fmt: skip
    assert made.hotplug_ports == 2 and not made.ports
    assert not boot_sets_network(made)  # a second NIC: the agent configures it
    assert boot_sets_network(machine_nics(spec(tmp_path), [BACKEND]))
    assert guest_nics([FRONT, BACKEND]) == [
        {"interface": "eth0", "mac": BACKEND.mac, "address": "10.20.0.5/24",
         "gateway": "10.20.0.1", "dns": "10.20.0.1", "search": "backend,front"},
        {"interface": "eth1", "mac": FRONT.mac, "address": "10.30.0.9/24"},
    ]  # fmt: skip


def test_a_kept_command_line_keeps_the_machine_it_booted(tmp_path: Path) -> None:
    made = machine_nics(spec(tmp_path), [BACKEND])
    booted = with_cmdline(made, kernel_cmdline(made))
    assert booted.hotplug_ports == 2 and not booted.user_stub
    template = with_cmdline(made, kernel_cmdline(spec(tmp_path)))  # user-mode networking
    assert template.hotplug_ports == 0 and template.user_stub
    assert not boot_sets_network(template)
