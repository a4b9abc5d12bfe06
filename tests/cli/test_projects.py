"""Projects: a token sees and touches only its project's VMs; quotas refuse with a sentence."""

from __future__ import annotations

import pytest

from tests.conftest import Env

pytestmark = pytest.mark.vm


def _as(bw: Env, token: str) -> Env:
    user = Env(bw.home)
    user.env["BUNGALOW_TOKEN"] = token
    return user


def _refused(env: Env, *args: str) -> str:
    result = env.run(*args, check=False)
    # exec keeps 1-124 for the command's own status: its refusals are 125, as docker exec's.
    assert result.returncode == (125 if args[0] == "exec" else 1), (args, result.stdout)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_tokens_cannot_cross_projects_and_quotas_hold(bw: Env) -> None:
    a = _as(
        bw,
        bw.run(
            "project", "create", "team-a", "--max-vms", "1", "--max-memory", "1G"
        ).stdout.strip(),
    )
    b = _as(bw, bw.run("project", "create", "team-b").stdout.strip())
    assert "memory quota is 1G: asked for 2G, 1G left" in _refused(
        a, "launch", "big", "--memory", "2G"
    )
    a.run("launch", "va", "--memory", "512M")
    assert "quota of 1 VM" in _refused(a, "launch", "va2", "--memory", "256M")
    assert a.run("ls", "-q").stdout.split() == ["va"]

    assert b.run("ls", "-q").stdout.split() == []
    for args in (
        ("exec", "va", "--", "true"),
        ("rm", "va"),
        ("inspect", "va"),
        ("cp", "va:/etc/hostname", str(bw.home / "stolen")),
        ("snapshot", "ls", "va"),
        ("stop", "va"),
    ):
        assert "There is no VM named va" in _refused(b, *args), args
    assert not (bw.home / "stolen").exists()
    assert "A token of project team-b cannot make VMs in project team-a" in _refused(
        b, "launch", "sneaky", "--project", "team-a"
    )
    assert "for the host's admin" in _refused(a, "project", "ls")
    assert "for the host's admin" in _refused(a, "image", "rm", "debian-12")
    assert "token is not valid" in _refused(_as(bw, "bgw_forged"), "ls")

    assert "va" in bw.run("ls", "-q").stdout.split()  # the admin sees every project
    listing = bw.run("project", "ls").stdout
    assert "team-a" in listing and "1/1" in listing and "512M/1G" in listing
    assert a.run("exec", "va", "--", "hostname").stdout == "va\n"
    assert "still has VMs (va)" in _refused(bw, "project", "rm", "team-a")
    a.run("rm", "va")
    bw.run("project", "rm", "team-a")
    assert "token is not valid" in _refused(a, "ls")
