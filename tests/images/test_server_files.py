"""A server image's files and hygiene (images/server.py), on a directory standing in for a root."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.errors import ImageError
from bungalow.guest.protocol import PORT_NAME
from bungalow.images.recipes import RECIPES, get_recipe
from bungalow.images.server import (
    AGENT_SERVICE,
    AGENT_UDEV_RULE,
    CLOUD_CFG,
    FILES,
    NETWORK_FILE,
    check_hygiene,
    hygiene_problems,
    strip_identity,
)


def dirty_root(root: Path) -> Path:
    """What mmdebstrap leaves: a machine-id, dbus's copy, host keys, policy-rc.d, a hostname."""
    for relative, text in (
        ("etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        ("var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n"),
        ("etc/ssh/ssh_host_ed25519_key", "private"),
        ("etc/ssh/ssh_host_ed25519_key.pub", "public"),
        ("etc/ssh/ssh_host_rsa_key", "private"),
        ("etc/ssh/sshd_config", "PermitRootLogin prohibit-password\n"),
        ("usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n"),
        ("etc/hostname", "builder\n"),
    ):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_fresh_root_has_every_problem_named(tmp_path: Path) -> None:
    problems = hygiene_problems(dirty_root(tmp_path))
    assert problems == [
        "/etc/machine-id is not an empty file",
        "/var/lib/dbus/machine-id is a file of its own",
        "/usr/sbin/policy-rc.d is there",
        "SSH host keys are there (ssh_host_ed25519_key, ssh_host_ed25519_key.pub, "
        "ssh_host_rsa_key)",
    ]
    with pytest.raises(ImageError, match="debian-12-server image is not clean: /etc/machine-id"):
        check_hygiene(get_recipe("debian-12-server"), tmp_path)


def test_stripping_leaves_no_identity(tmp_path: Path) -> None:
    root = dirty_root(tmp_path)
    strip_identity(root)
    assert hygiene_problems(root) == []
    assert (root / "etc/machine-id").read_text() == ""
    assert (root / "var/lib/dbus/machine-id").is_symlink()
    assert str((root / "var/lib/dbus/machine-id").readlink()) == "/etc/machine-id"
    assert not (root / "etc/hostname").exists()
    assert (root / "etc/ssh/sshd_config").exists()  # only the keys go
    check_hygiene(get_recipe("debian-12-server"), root)


def test_the_agent_is_started_by_udev_on_its_own_port() -> None:
    assert f'ATTR{{name}}=="{PORT_NAME}"' in AGENT_UDEV_RULE
    assert 'ENV{SYSTEMD_WANTS}+="bungalow-agent.service"' in AGENT_UDEV_RULE
    assert 'TAG+="systemd"' in AGENT_UDEV_RULE
    assert "\n" not in AGENT_UDEV_RULE.replace("\\\n", "").rstrip("\n")  # one rule, one line
    lines = AGENT_SERVICE.splitlines()
    assert "DefaultDependencies=no" in lines
    assert "ExecStart=/usr/bin/python3 -S /run/bungalow/agent.py --systemd" in lines
    assert "Restart=on-failure" in lines
    assert "WantedBy=sysinit.target" in lines  # early, before udev's coldplug


def test_the_network_and_cloud_init_never_wait_for_what_is_not_there() -> None:
    assert "DHCP=yes" in NETWORK_FILE.splitlines()
    assert "ClientIdentifier=mac" in NETWORK_FILE.splitlines()
    assert "UseDomains=yes" in NETWORK_FILE.splitlines()
    assert "datasource_list: [NoCloud, ConfigDrive, None]" in CLOUD_CFG.splitlines()
    paths = [path for path, _ in FILES]
    assert len(paths) == len(set(paths))
    assert all(not path.startswith("/") for path in paths)


@pytest.mark.parametrize("name", ["debian-11-server", "debian-12-server", "debian-13-server"])
def test_server_recipes_carry_systemd_sshd_and_cloud_init(name: str) -> None:
    recipe = RECIPES[name]
    assert recipe.flavour == "server"
    assert {"systemd-sysv", "udev", "dbus", "openssh-server", "cloud-init"} <= set(recipe.packages)
    assert {"python3", "e2fsprogs"} <= set(recipe.packages)  # the agent's needs
    # bullseye's resolved is part of systemd; later suites package it on its own
    assert ("systemd-resolved" in recipe.packages) == (recipe.suite != "bullseye")
    micro = RECIPES[name.removesuffix("-server")]
    assert micro.flavour == "micro" and micro.suite == recipe.suite
