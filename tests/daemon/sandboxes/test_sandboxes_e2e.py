"""Sandboxes as the daemon keeps them: templates, deadlines it enforces, the warm pool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from bungalow.client.http import Client
from bungalow.paths import DataDir
from tests.conftest import Env

pytestmark = pytest.mark.vm


@pytest.fixture
def api(bw: Env) -> Iterator[Client]:
    bw.run("ls")  # the daemon, started with the test's image cache
    with Client(DataDir(bw.home), autostart=False) as client:
        yield client


def _names(api: Client) -> set[str]:
    return {vm["name"] for vm in api.list_vms()}


def _wait_gone(api: Client, name: str, timeout: float) -> float:
    began = time.monotonic()
    while name in _names(api):
        assert time.monotonic() - began < timeout, f"{name} still exists after {timeout} s"
        time.sleep(0.2)
    return time.monotonic() - began


def test_a_template_is_made_once_and_sandboxes_start_from_it(bw: Env, api: Client) -> None:
    first = api.request("POST", "/v1/sandboxes", json={"timeout": "5m"})
    second = api.request("POST", "/v1/sandboxes", json={"timeout": "5m"})
    assert first["sandbox"] and second["sandbox"]
    assert first["base_snapshot"] == second["base_snapshot"] is not None
    assert first["expires_at"] > time.time() + 250
    templates = [e for e in api.events_log() if e["kind"] == "template"]
    assert len(templates) == 1
    for vm in (first, second):
        out = b"".join(e.get("data", b"") for e in api.exec_events(vm["name"], ["hostname"]))
        assert out.decode().strip() == vm["name"]
    # The template VM itself is gone: only the two sandboxes run.
    assert len(bw.qemu_pids()) == 2


def test_the_daemon_reaps_a_sandbox_whose_client_was_killed(bw: Env, api: Client) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from bungalow.client.http import Client
        from bungalow.paths import DataDir
        from pathlib import Path
        vm = Client(DataDir(Path(sys.argv[1]))).request(
            "POST", "/v1/sandboxes", json={"timeout": "4s"})
        print(vm["name"], flush=True)
        time.sleep(3600)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(bw.home)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    name = child.stdout.readline().strip()
    assert name in _names(api)
    child.send_signal(signal.SIGKILL)
    child.wait()
    _wait_gone(api, name, timeout=30)
    expired = [e for e in api.events_log(name) if e["kind"] == "expired"]
    assert expired and "timeout passed" in expired[0]["message"]
    assert bw.qemu_pids() == []


def test_deadlines_survive_a_daemon_restart(bw: Env, api: Client) -> None:
    vm = api.request("POST", "/v1/sandboxes", json={"timeout": "25s", "warm": False})
    pid = bw.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    bw.run("ls")  # a new daemon, which reattaches
    with Client(DataDir(bw.home), autostart=False) as again:
        assert vm["name"] in _names(again)
        _wait_gone(again, vm["name"], timeout=60)
    assert bw.qemu_pids() == []


def test_a_lease_can_be_extended_or_dropped(bw: Env, api: Client) -> None:
    vm = api.request("POST", "/v1/sandboxes", json={"timeout": "3s"})
    api.request("POST", f"/v1/vms/{vm['name']}/lease", json={"timeout": None})
    time.sleep(5)
    assert vm["name"] in _names(api)
    longer = api.request("POST", f"/v1/vms/{vm['name']}/lease", json={"timeout": "1h"})
    assert longer["expires_at"] > time.time() + 3500
    listing = bw.run("ls").stdout
    assert "in 59m" in listing or "in 1h" in listing


def test_the_warm_pool_hands_out_started_sandboxes(bw: Env) -> None:
    bw.home.mkdir(exist_ok=True)
    (bw.home / "config.toml").write_text("[sandboxes]\npool = 1\ntimeout = '2m'\n")
    bw.run("ls")
    with Client(DataDir(bw.home), autostart=False) as api:
        first = api.request("POST", "/v1/sandboxes", json={})
        assert 100 < first["expires_at"] - time.time() <= 120  # the configured default
        deadline = time.monotonic() + 60
        while not any(e["kind"] == "created" for e in api.events_log() if e["vm"] != first["name"]):
            assert time.monotonic() < deadline, "the pool was never filled"
            time.sleep(0.5)
        time.sleep(2)  # its warm-up command
        assert [vm["pooled"] for vm in api.list_vms()].count(True) == 1
        assert "pool" in bw.run("ls").stdout
        began = time.monotonic()
        second = api.request("POST", "/v1/sandboxes", json={"timeout": "5m"})
        took = time.monotonic() - began
        claimed = [e for e in api.events_log(second["name"]) if e["kind"] == "claimed"]
        assert claimed, f"the second sandbox was not taken from the pool ({took:.2f} s)"
        assert second["expires_at"] > time.time() + 250
        out = b"".join(e.get("data", b"") for e in api.exec_events(second["name"], ["hostname"]))
        assert out.decode().strip() == second["name"]


def test_a_bad_config_is_one_sentence(bw: Env) -> None:
    bw.home.mkdir(exist_ok=True)
    (bw.home / "config.toml").write_text("[sandboxes]\npool = 'lots'\n")
    result = bw.run("ls", check=False)
    assert result.returncode == 1
    assert "sandboxes.pool" in result.stderr
