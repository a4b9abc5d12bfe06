"""A client outlives its daemon: a daemon killed between two calls is started again.

Real daemons, no VM: the installation has an empty image store of its own.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from bungalow.client.async_http import AsyncClient
from bungalow.client.http import Client
from bungalow.errors import DaemonError
from bungalow.paths import DataDir
from tests.conftest import Env
from tests.support import gone, wait_until


def _kill_daemon(env: Env) -> None:
    pid = env.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until("the daemon's end", lambda: gone(pid), 10)


def test_a_killed_daemon_is_started_again_by_the_next_call(installation: Env) -> None:
    with Client(DataDir(installation.home)) as client:
        assert client.list_vms() == []
        first = installation.daemon_pid()
        _kill_daemon(installation)
        assert client.list_vms() == []  # the connection was refused: nothing was sent yet
        assert installation.daemon_pid() not in (None, first)


def test_the_async_client_too(installation: Env) -> None:
    async def calls() -> None:
        async with AsyncClient(DataDir(installation.home)) as client:
            assert (await client.request("GET", "/v1/health"))["ok"] is True
            _kill_daemon(installation)
            assert (await client.request("GET", "/v1/health"))["ok"] is True

    asyncio.run(calls())


def test_without_autostart_a_gone_daemon_is_one_sentence(installation: Env) -> None:
    installation.run("ls")
    _kill_daemon(installation)
    with (
        Client(DataDir(installation.home), autostart=False) as client,
        pytest.raises(DaemonError, match="Lost the connection to bungalowd"),
    ):
        client.list_vms()
