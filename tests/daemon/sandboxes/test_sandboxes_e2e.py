"""Sandboxes as the daemon keeps them: templates, the deadline it enforces whatever became of
the client, and the warm pool handing out a started VM.

How a sandbox's deadline is kept (to the second, without a warning, moved or dropped) is
unit-tested in tests/daemon/policies/test_leases.py, and that deadlines outlive a daemon
restart in test_leases_e2e.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from bungalow.client.http import Client
from bungalow.paths import DataDir
from tests.conftest import NO_KSM, Env
from tests.policy_env import move_clock, policy_env
from tests.support import wait_until

pytestmark = pytest.mark.vm


@pytest.fixture
def api(bw: Env) -> Iterator[Client]:
    policy_env(bw)  # a test clock
    bw.run("ls")  # the daemon, started with the test's image cache and clock
    with Client(DataDir(bw.home), autostart=False) as client:
        yield client


def _names(api: Client) -> set[str]:
    return {vm["name"] for vm in api.list_vms()}


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
            "POST", "/v1/sandboxes", json={"timeout": "1h"})
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
    move_clock(bw, 3601)  # its hour has passed for the daemon
    wait_until(f"{name}'s removal", lambda: name not in _names(api), timeout=30)
    expired = [e for e in api.events_log(name) if e["kind"] == "expired"]
    assert expired and "timeout passed" in expired[0]["message"]
    assert bw.qemu_pids() == []


def _waiting_in_the_pool(api: Client) -> list[str]:
    """Pooled VMs a claim can take now: running, no operation under way."""
    return [
        vm["name"]
        for vm in api.list_vms()
        if vm["pooled"] and vm["state"] == "running" and vm["operation"] is None
    ]


def test_the_warm_pool_hands_out_started_sandboxes(bw: Env) -> None:
    (bw.home / "config.toml").write_text("[sandboxes]\npool = 1\ntimeout = '2m'\n" + NO_KSM)
    bw.run("ls")
    with Client(DataDir(bw.home), autostart=False) as api:
        first = api.request("POST", "/v1/sandboxes", json={})
        assert 100 < first["expires_at"] - time.time() <= 120  # the configured default
        (pooled,) = wait_until("a started VM in the pool", lambda: _waiting_in_the_pool(api))
        assert [vm["pooled"] for vm in api.list_vms()].count(True) == 1
        assert "pool" in bw.run("ls").stdout
        second = api.request("POST", "/v1/sandboxes", json={"timeout": "5m"})
        assert second["name"] == pooled
        claimed = [e for e in api.events_log(second["name"]) if e["kind"] == "claimed"]
        assert claimed, "the second sandbox was not taken from the pool"
        assert second["expires_at"] > time.time() + 250
        out = b"".join(e.get("data", b"") for e in api.exec_events(second["name"], ["hostname"]))
        assert out.decode().strip() == second["name"]


def test_a_warm_pool_nobody_asks_of_lapses_and_is_shown_for_what_it_is(bw: Env) -> None:
    (bw.home / "config.toml").write_text("[sandboxes]\npool = 1\npool_idle = '10s'\n" + NO_KSM)
    bw.run("ls")
    with Client(DataDir(bw.home), autostart=False) as api:
        mine = api.request("POST", "/v1/sandboxes", json={})["name"]
        (pooled,) = wait_until(
            "the pool's VM", lambda: [vm["name"] for vm in api.list_vms() if vm["pooled"]]
        )
        (row,) = [line for line in bw.run("ls").stdout.splitlines() if pooled in line]
        assert "(pool)" in row
        (found,) = [line for line in bw.run("sprawl").stdout.splitlines() if pooled in line]
        assert " pool " in found and "warm pool" in found
        wait_until(
            "the unused pool to lapse",
            lambda: not any(vm["pooled"] for vm in api.list_vms()),
            timeout=120,
        )
        lapsed = [e for e in api.events_log(pooled) if e["kind"] == "lapsed"]
        assert lapsed and lapsed[0]["actor"] == "policy pool"
        assert [vm["name"] for vm in api.list_vms()] == [mine]  # the asker's own stays
        assert len(bw.qemu_pids()) == 1
