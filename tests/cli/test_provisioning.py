"""Provisioning on a micro VM: --ssh-key installed by the agent, `bungalow ssh` refused where
it cannot work (no sshd; a stopped VM). On the server image (cloud-init's seed read, `bungalow
ssh` with its exit status passed through, a clone's new instance-id) it is tested in
tests/cli/test_consolidation.py, whose servers are provisioned that way anyway."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Env

pytestmark = pytest.mark.vm


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
