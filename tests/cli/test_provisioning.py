"""Provisioning end to end: --ssh-key installed by the agent, `bungalow ssh` refused where it
cannot work (micro image: no sshd; a stopped VM), and on the server image cloud-init's seed
read (write_files, runcmd), `bungalow ssh` running a command with its exit status passed
through, and a clone getting a new instance-id."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, _finish, _new_env
from tests.support import wait_until

pytestmark = pytest.mark.vm

SERVER = "debian-12-server"

USER_DATA = """#cloud-config
write_files:
  - path: /etc/prov-written
    content: written by cloud-init
runcmd:
  - [sh, -c, "echo ran > /root/prov-ran"]
"""


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


def test_micro_vm_gets_its_keys_and_ssh_says_what_to_use(bw: Env, key: Path) -> None:
    bw.run("launch", "keys", "--ssh-key", str(key.with_suffix(".pub")))
    listing = bw.run(
        "exec", "keys", "--", "stat", "-c", "%a %n", "/root/.ssh", "/root/.ssh/authorized_keys"
    ).stdout.split("\n")
    assert listing[:2] == ["700 /root/.ssh", "600 /root/.ssh/authorized_keys"]
    installed = bw.run("exec", "keys", "--", "cat", "/root/.ssh/authorized_keys").stdout
    assert installed.split()[:2] == key.with_suffix(".pub").read_text().split()[:2]

    refused = bw.run("ssh", "keys", "--", "true", check=False)
    assert refused.returncode == 1
    assert "runs no SSH server; use `bungalow shell keys`" in refused.stderr
    assert "debian-12-server" in refused.stderr

    bw.run("stop", "keys")
    stopped = bw.run("ssh", "keys", check=False)
    assert stopped.returncode == 1
    assert "is stopped, not running" in stopped.stderr
    # Installed again on every start: a key a guest's user removed comes back.
    bw.run("start", "keys")
    assert "ssh-ed25519" in bw.run("exec", "keys", "--", "cat", "/root/.ssh/authorized_keys").stdout


@pytest.fixture(scope="module")
def server(server_image: Path) -> Iterator[Env]:
    env = _new_env()
    yield env
    _finish(env)


def _guest(bw: Env, name: str, *argv: str) -> str:
    return bw.run("exec", name, "--", *argv).stdout


def test_cloud_init_ssh_and_a_clone_on_the_server_image(
    server: Env, key: Path, tmp_path: Path
) -> None:
    user_data = tmp_path / "user-data.yaml"
    user_data.write_text(USER_DATA)
    server.run(
        "launch", "srv", "--image", SERVER, "--cloud-init", str(user_data),
        "--ssh-key", str(key.with_suffix(".pub")), "--memory", "1G", timeout=900,
    )  # fmt: skip
    wait_until(
        "cloud-init finished",
        lambda: _guest(server, "srv", "sh", "-c", "test -e /var/lib/cloud/instance/boot-finished "
                       "&& echo yes || true").strip() == "yes",
        timeout=600, interval=2,
    )  # fmt: skip
    assert _guest(server, "srv", "cat", "/etc/prov-written") == "written by cloud-init"
    assert _guest(server, "srv", "cat", "/root/prov-ran").strip() == "ran"
    vm_id = server.run("inspect", "srv", "--json").stdout.split('"id": "')[1].split('"')[0]
    assert _guest(server, "srv", "cat", "/var/lib/cloud/data/instance-id").strip() == vm_id
    assert key.with_suffix(".pub").read_text().split()[1] in _guest(
        server, "srv", "cat", "/root/.ssh/authorized_keys"
    )

    # ssh with a home of no keys: bungalow makes its own pair and installs it.
    home = tmp_path / "home"
    home.mkdir()
    server.env["HOME"] = str(home)
    uname = server.run("ssh", "srv", "--", "uname", "-a", timeout=300)
    assert uname.stdout.startswith("Linux srv ")
    status = server.run("ssh", "srv", "--", "sh", "-c", "exit 7", check=False, timeout=300)
    assert status.returncode == 7
    assert (server.home / "ssh" / "known_hosts").read_text().startswith("srv ")

    # A clone of the stopped VM boots with a seed of its own: a new instance-id.
    server.run("stop", "srv", timeout=300)
    server.run("clone", "srv", "srv2", timeout=900)
    clone_id = server.run("inspect", "srv2", "--json").stdout.split('"id": "')[1].split('"')[0]
    wait_until(
        "the clone's cloud-init ran",
        lambda: _guest(server, "srv2", "sh", "-c", "cat /var/lib/cloud/data/instance-id "
                       "2>/dev/null || true").strip() == clone_id,
        timeout=600, interval=2,
    )  # fmt: skip
