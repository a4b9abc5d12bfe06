"""A clone's new identity inside the guest (agent_identity.py), on a directory standing in for /."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.guest import agent_identity
from bungalow.guest.agent_server import parse_args

OLD = "0123456789abcdef0123456789abcdef"
NEW = "fedcba9876543210fedcba9876543210"


def guest_root(root: Path, *, systemd: bool) -> Path:
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/machine-id").write_text(OLD + "\n")
    for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "sshd_config"):
        (root / "etc/ssh" / name).write_text(name)
    if systemd:
        (root / "run/systemd/system").mkdir(parents=True)
    return root


def test_a_new_machine_id_under_systemd_takes_the_host_keys_away(tmp_path: Path) -> None:
    root = str(guest_root(tmp_path, systemd=True))
    assert agent_identity.sync({"machine_id": NEW}, root) == ["ssh_host_keys", "machine_id"]
    assert (tmp_path / "etc/machine-id").read_text() == NEW + "\n"
    assert sorted(p.name for p in (tmp_path / "etc/ssh").iterdir()) == ["sshd_config"]


def test_the_same_machine_id_again_changes_nothing(tmp_path: Path) -> None:
    root = str(guest_root(tmp_path, systemd=True))
    assert not agent_identity.set_machine_id(OLD, root)
    assert agent_identity.sync({"machine_id": OLD}, root) == ["machine_id"]
    assert (tmp_path / "etc/ssh/ssh_host_ed25519_key").exists()


def test_without_systemd_the_keys_are_left_alone(tmp_path: Path) -> None:
    root = str(guest_root(tmp_path, systemd=False))
    assert not agent_identity.under_systemd(root)
    assert agent_identity.sync({"machine_id": NEW}, root) == ["machine_id"]
    assert (tmp_path / "etc/ssh/ssh_host_ed25519_key").exists()


def test_systemd_mode_is_its_own_flag() -> None:
    options = parse_args(["--systemd"])
    assert options.systemd and not options.init
    assert options.console == "/dev/console"
    with pytest.raises(SystemExit, match="--init or --systemd, not both"):
        parse_args(["--init", "--systemd"])


def test_a_new_nics_domain_joins_the_search_line_once(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.20.0.1\nsearch backend\n")
    agent_identity.add_search(str(resolv), "front")
    agent_identity.add_search(str(resolv), "front")
    assert resolv.read_text() == "nameserver 10.20.0.1\nsearch backend front\n"
    resolv.write_text("nameserver 10.0.2.3\n")
    agent_identity.add_search(str(resolv), "front")
    assert resolv.read_text() == "nameserver 10.0.2.3\nsearch front\n"
    agent_identity.add_search(str(tmp_path / "none"), "front")
    assert not (tmp_path / "none").exists()
