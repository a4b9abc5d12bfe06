"""``bungalow network`` through a real bungalowd: the commands, their refusals, and what a
daemon SIGKILLed leaves for the next one (adopted or settled, nothing half made)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
from collections.abc import Iterator

import pytest

from bungalow.host.net import hostsfile
from bungalow.host.net.naming import HostNames
from tests.conftest import BUNGALOW, Env
from tests.daemon.networks.kit import leftovers, sh
from tests.support import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="networks need root")


@pytest.fixture
def bwn(installation: Env) -> Iterator[Env]:
    """An installation whose networks are all removed, and checked gone, at the end."""
    yield installation
    names = HostNames(installation.home)
    if installation.daemon_pid():
        for network in json.loads(installation.run("network", "ls", "--json").stdout):
            installation.run("network", "rm", network["name"])
    assert leftovers(names.bridge_prefix, names.table, installation.home) == []
    assert hostsfile.block(names.hosts_marker()) == []


def _refused(env: Env, *args: str) -> str:
    result = env.run(*args, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_network_commands_and_their_refusals(bwn: Env) -> None:
    made = bwn.run("network", "create", "netcli", "--subnet", "10.201.20.0/24").stdout
    assert "10.201.20.0/24" in made and "NAME.netcli" in made
    listed = json.loads(bwn.run("network", "ls", "--json").stdout)
    assert [(n["name"], n["subnet"], n["gateway"], n["vms"]) for n in listed] == [
        ("netcli", "10.201.20.0/24", "10.201.20.1", 0)
    ]
    detail = json.loads(bwn.run("network", "inspect", "netcli", "--json").stdout)
    assert detail["nics"] == [] and detail["dnsmasq_pid"]
    assert "netcli" in bwn.run("network", "ls").stdout

    # a route of the host's own, on an interface this test makes
    dummy = f"netd{secrets.token_hex(3)}"
    sh("ip", "link", "add", dummy, "type", "bridge")
    try:
        sh("ip", "addr", "add", "10.201.21.1/24", "dev", dummy)
        assert "collides with the host's route or address 10.201.21.0/24" in _refused(
            bwn, "network", "create", "netroute", "--subnet", "10.201.21.0/24"
        )
    finally:
        sh("ip", "link", "del", dummy)
    assert "overlaps network netcli's" in _refused(
        bwn, "network", "create", "netover", "--subnet", "10.201.20.64/26"
    )
    assert "already exists" in _refused(
        bwn, "network", "create", "netcli", "--subnet", "10.201.22.0/24"
    )
    assert "--subnet" in _refused(bwn, "network", "create", "netbad", "--subnet", "10.201.300/4")
    assert "/30 prefix" in _refused(
        bwn, "network", "create", "netsmall", "--subnet", "10.201.23.0/30"
    )
    assert "no network named netnone" in _refused(bwn, "network", "inspect", "netnone")
    assert "does not start with a letter" in _refused(bwn, "network", "create", "1")
    # rm goes on past a name that is not there, and exits 1
    result = bwn.run("network", "rm", "netnone", "netcli", check=False)
    assert result.returncode == 1 and "network netcli is removed" in result.stdout
    assert json.loads(bwn.run("network", "ls", "--json").stdout) == []


def _kill_daemon(env: Env) -> None:
    pid = env.daemon_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    wait_until("the daemon to die", lambda: not os.path.exists(f"/proc/{pid}/cmdline"), 10)


def test_a_daemon_after_a_sigkill_adopts_the_networks_as_they_run(bwn: Env) -> None:
    bwn.run("network", "create", "netkeep", "--subnet", "10.201.24.0/24")
    before = json.loads(bwn.run("network", "inspect", "netkeep", "--json").stdout)
    names = HostNames(bwn.home)
    rules = sh("nft", "list", "table", "inet", names.table).stdout
    _kill_daemon(bwn)
    after = json.loads(bwn.run("network", "inspect", "netkeep", "--json").stdout)
    assert after["dnsmasq_pid"] == before["dnsmasq_pid"]
    assert sh("nft", "list", "table", "inet", names.table).stdout == rules
    # a dnsmasq killed while no daemon ran is started again by the next one
    _kill_daemon(bwn)
    os.kill(after["dnsmasq_pid"], signal.SIGKILL)
    again = json.loads(bwn.run("network", "inspect", "netkeep", "--json").stdout)
    assert again["dnsmasq_pid"] not in (None, after["dnsmasq_pid"])


def test_an_interrupted_create_is_rolled_back_and_strays_are_swept(bwn: Env) -> None:
    bwn.run("network", "create", "nethalf", "--subnet", "10.201.25.0/24")
    bwn.run("network", "create", "netwhole", "--subnet", "10.201.26.0/24")
    _kill_daemon(bwn)
    # as if the daemon had died half-way through making nethalf
    with sqlite3.connect(bwn.home / "bungalow.db") as db:
        db.execute("UPDATE networks SET operation = 'create' WHERE name = 'nethalf'")
    db.close()
    names = HostNames(bwn.home)
    stray = names.bridge(9999)
    sh("ip", "link", "add", stray, "type", "bridge")
    listed = json.loads(bwn.run("network", "ls", "--json").stdout)
    assert [n["name"] for n in listed] == ["netwhole"]
    links = sh("ip", "-br", "link").stdout
    assert stray not in links
    assert "10.201.25.1" not in sh("ip", "-4", "-br", "addr").stdout
    assert len(sh("pgrep", "-f", f"dnsmasq.*{bwn.home}/", check=False).stdout.split()) == 1


def test_a_daemon_not_root_refuses_networks_and_still_serves(installation: Env) -> None:
    """``unshare --user`` runs the CLI, and the daemon it starts, with uid 65534 in a user
    namespace of their own (still able to read this checkout, owned by root)."""
    command = ["unshare", "--user", *BUNGALOW]
    refused = subprocess.run(
        [*command, "network", "create", "netnoroot", "--subnet", "10.201.27.0/24"],
        env=installation.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: Private networks need root")
    assert "runs as uid 65534" in refused.stderr
    listed = subprocess.run(
        [*command, "network", "ls", "--json"],
        env=installation.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
