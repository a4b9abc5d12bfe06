"""A bungalow installation whose daemon reads a test clock, for the sprawl policy tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from bungalow.client.http import Client
from bungalow.daemon.state.clock import CLOCK_ENV, advance
from bungalow.paths import DataDir
from tests.conftest import NO_KSM, Env

#: Short enough for tests, long enough that every step below is seen between the moments.
CONFIG = """
[sandboxes]
pool = 0
[reaper]
interval = "0.5s"
[leases]
warn_before = "10m"
grace = "2s"
"""


def policy_env(env: Env, extra: str = "") -> Env:
    """Point ``env``'s daemon at a test clock and the short policy periods above."""
    (env.home / "config.toml").write_text(CONFIG + extra + NO_KSM)
    env.env[CLOCK_ENV] = str(env.home / "clock")
    (env.home / "clock").write_text("0\n")
    return env


def move_clock(env: Env, seconds: float) -> None:
    advance(env.home / "clock", seconds)


def api(env: Env) -> Client:
    env.run("ls")  # the daemon, started with the test's environment
    return Client(DataDir(env.home), autostart=False)


def events(env: Env, vm: str, kind: str | None = None) -> list[dict[str, Any]]:
    with api(env) as client:
        found = client.events_log(vm, limit=1000)
    return [e for e in found if kind is None or e["kind"] == kind]


def inspect(env: Env, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(env.run("inspect", name).stdout)
    return result


def one_sentence(result: Any) -> str:
    """The stderr of a refused command: exit 1, one line, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return str(lines[0])


def names(env: Env) -> Iterator[str]:
    yield from env.run("ls", "-q").stdout.split()
