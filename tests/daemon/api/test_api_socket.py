"""The daemon as a process: an OpenAPI schema on an owner-only socket, one daemon per directory.

No VM boots here, so the installation has no images (``installation``) and a
fresh machine runs these without building one.
"""

from __future__ import annotations

import stat
import subprocess
import sys

import httpx

from tests.conftest import Env


def test_socket_is_owner_only_and_serves_openapi(installation: Env) -> None:
    installation.run("ls")  # starts the daemon
    socket_path = installation.home / "bungalowd.sock"
    assert stat.S_IMODE(socket_path.stat().st_mode) & 0o077 == 0
    transport = httpx.HTTPTransport(uds=str(socket_path))
    with httpx.Client(transport=transport, base_url="http://bungalowd") as client:
        schema = client.get("/openapi.json").json()
        assert {"/v1/vms", "/v1/vms/{name}/exec", "/v1/images/build", "/v1/host"} <= set(
            schema["paths"]
        )
        missing = client.get("/v1/vms/ghost")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "vm_not_found"


def test_a_second_daemon_for_the_same_directory_steps_aside(installation: Env) -> None:
    installation.run("ls")
    first = installation.daemon_pid()
    result = subprocess.run(
        [sys.executable, "-m", "bungalow.daemon.server.main", "--home", str(installation.home)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "already running" in result.stderr
    assert installation.daemon_pid() == first


def test_a_bad_config_stops_the_daemon_with_one_sentence(installation: Env) -> None:
    (installation.home / "config.toml").write_text("[sandboxes]\npool = 'lots'\n")
    result = installation.run("ls", check=False)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "sandboxes.pool" in line and "must be a whole number from 0 to 16" in line
    assert installation.daemon_pid() is None
