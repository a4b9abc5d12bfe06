"""`bungalow cost`, and cost in `ls` and `inspect`: a real daemon, real VMs, the test clock.

The daemon's clock runs ahead of the host's by the seconds in the file named by
BUNGALOW_TEST_CLOCK, so hours pass at once. The seconds the test itself takes
(booting, stopping) are real and are counted too: every check allows exactly
the real time elapsed since the test's first launch, ``slack(began)``, and no more.

Each test has its own installation and VMs. Grouping, windows and removed VMs
are also unit tests of the report (tests/daemon/accounting/test_report.py);
here the history comes from real starts, stops, removals and daemon crashes.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bungalow.daemon.accounting.ledger import HEARTBEAT
from bungalow.daemon.state.clock import CLOCK_ENV, advance
from tests.conftest import Env, _finish, _new_env
from tests.support import kill

H = 3600.0
GIB = 1 << 30
# One unit per vCPU-hour, two per GiB-hour of memory, one per GiB-hour of disk.
PRICES = "[prices]\nvcpu_hour = 1.0\nmemory_gib_hour = 2.0\ndisk_gib_month = 730.0\n"


@pytest.fixture
def priced(image_cache: Path) -> Iterator[Env]:
    """An installation of the test's own with the prices above and a test clock."""
    env = _new_env()
    with (env.home / "config.toml").open("a") as config:
        config.write(PRICES)
    (env.home / "clock").write_text("0\n")
    env.env[CLOCK_ENV] = str(env.home / "clock")
    yield env
    _finish(env)


@pytest.fixture(scope="module")
def refusing() -> Iterator[Env]:
    """One installation without images for the refusals at the end: they change nothing, so
    they share it (a daemon's start is most of each one's time)."""
    env = _new_env(own_images=True)
    yield env
    _finish(env)


def slack(began: float) -> float:
    """Hours of real time since ``began`` (the first launch): all the unhurried time there is."""
    return (time.time() - began) / H


def report(bw: Env, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(bw.run("cost", "--json", *args).stdout)
    return result


def row(bw: Env, group: str, *args: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [r for r in report(bw, *args)["rows"] if r["group"] == group]
    assert len(found) == 1, found
    return found[0]


def between(value: float, low: float, high: float) -> bool:
    return low - 1e-9 <= value <= high + 1e-9


@pytest.mark.vm
def test_run_stop_run_costs_what_the_hand_says_over_any_window(priced: Env) -> None:
    began = time.time()
    priced.run("launch", "ci", "--owner", "alice", "--label", "team=a", "--memory", "512M")
    advance(priced.home / "clock", 2 * H)
    priced.run("stop", "ci")
    advance(priced.home / "clock", 5 * H)
    priced.run("start", "ci")
    advance(priced.home / "clock", 1 * H)
    vm = json.loads(priced.run("inspect", "ci").stdout)
    disk_gib = vm["disk_size"] / GIB
    ci = row(priced, "ci")
    running, stopped = ci["running_hours"], ci["stopped_hours"]
    assert between(running, 3, 3 + slack(began)), ci
    assert between(stopped, 5, 5 + slack(began)), ci
    assert ci["intervals"] == 4  # created (stopped), running, stopped, running
    assert ci["cpu"] == pytest.approx(running * 1 * 1.0)
    assert ci["memory"] == pytest.approx(running * 0.5 * 2.0)
    assert ci["disk"] == pytest.approx((running + stopped) * disk_gib * 1.0)
    assert ci["total"] == pytest.approx(ci["cpu"] + ci["memory"] + ci["disk"])

    per_hour = 1.0 + 0.5 * 2.0 + disk_gib
    assert vm["cost"]["per_hour"] == pytest.approx(per_hour)
    assert vm["cost"]["currency"] == "USD"
    # inspect came first; between the two, at most the real time elapsed was charged.
    assert between(ci["total"] - vm["cost"]["so_far"], 0, slack(began) * per_hour)
    listing = priced.run("ls").stdout
    assert "COST" in listing.splitlines()[0] and " USD" in listing.splitlines()[1]

    # The stop ended 2 h into the clock and the start began 7 h in: a cut at 3 h.
    cut = began + 3 * H
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(cut)) + f"{cut % 1:.6f}"[1:]
    whole = row(priced, "ci")
    after = row(priced, "ci", "--since", iso)
    before = row(priced, "ci", "--until", iso)
    assert between(after["running_hours"], 1, 1 + slack(began)), after
    assert between(after["stopped_hours"], 4 - slack(began), 4 + slack(began)), after
    assert between(before["running_hours"], 2, 2 + slack(began)), before
    assert between(before["stopped_hours"], 1 - slack(began), 1 + slack(began)), before
    total = whole["running_hours"] + whole["stopped_hours"]
    # Real time passes between the three reports: the two halves add up to the whole.
    halves = sum(r[k] for r in (after, before) for k in ("running_hours", "stopped_hours"))
    assert between(halves, total, total + slack(began))
    assert row(priced, "ci", "--since", "30m")["running_hours"] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.vm
def test_a_removed_vm_stays_in_the_totals_and_its_projects_view(priced: Env) -> None:
    began = time.time()
    token = priced.run("project", "create", "team-b").stdout.strip()
    priced.run("launch", "other", "--owner", "bob", "--label", "team=b", "--project", "team-b")
    advance(priced.home / "clock", 1 * H)
    priced.run("rm", "other")
    gone = row(priced, "other")
    assert gone["removed"] is True
    assert between(gone["running_hours"], 1, 1 + slack(began))
    by_owner = {r["group"]: r for r in report(priced, "--by", "owner")["rows"]}
    assert set(by_owner) == {"bob"} and by_owner["bob"]["total"] == pytest.approx(gone["total"])
    assert [r["group"] for r in report(priced, "--by", "project")["rows"]] == ["team-b"]
    teams = {r["group"]: r for r in report(priced, "--by", "label:team")["rows"]}
    assert teams["b"]["total"] == pytest.approx(gone["total"])

    advance(priced.home / "clock", 1 * H)  # a removed VM costs nothing more
    assert row(priced, "other")["total"] == gone["total"]

    as_project = Env(priced.home)
    as_project.env["BUNGALOW_TOKEN"] = token
    as_project.env[CLOCK_ENV] = priced.env[CLOCK_ENV]
    assert [r["group"] for r in report(as_project)["rows"]] == ["other"]
    text = priced.run("cost", "--by", "owner").stdout
    assert "bob" in text and "USD from" in text


@pytest.mark.vm
def test_a_killed_daemon_loses_no_usage_and_counts_nothing_twice(priced: Env) -> None:
    began = time.time()
    priced.run("launch", "ci", "--memory", "512M")
    advance(priced.home / "clock", 1 * H)
    before = row(priced, "ci")
    _kill_daemon(priced)
    advance(priced.home / "clock", 1 * H)
    after = row(priced, "ci")  # a new daemon reattaches to the QEMU, which ran all along
    assert after["intervals"] == before["intervals"]
    assert between(after["running_hours"] - before["running_hours"], 1, 1 + slack(began))
    assert after["stopped_hours"] == before["stopped_hours"]

    # Now the VM dies with the daemon: the running time ends at the daemon's last heartbeat.
    _kill_daemon(priced)
    for pid in priced.qemu_pids():
        os.kill(pid, signal.SIGKILL)
    advance(priced.home / "clock", 1 * H)
    last = row(priced, "ci")
    assert json.loads(priced.run("inspect", "ci").stdout)["state"] == "failed"
    assert last["intervals"] == after["intervals"] + 1
    # The last heartbeat can come up to HEARTBEAT seconds before the crash (and the query).
    assert between(last["running_hours"] - after["running_hours"], -HEARTBEAT / H, slack(began))
    assert between(last["stopped_hours"] - after["stopped_hours"], 1, 1 + slack(began))


def _kill_daemon(bw: Env) -> None:
    daemon = bw.daemon_pid()
    assert daemon is not None
    kill(daemon)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--by", "cpu"), "Cannot group costs by 'cpu'; use vm, owner, project or label:KEY"),
        (("--since", "yesterday"), "--since value 'yesterday' is neither a date nor a duration"),
        (("--since", "1h", "--until", "2h"), "is empty; since must come before until"),
        (("--by", "label:Team"), "label key 'Team' is not valid"),
    ],
)
def test_bad_input_is_one_sentence(installation: Env, args: tuple[str, ...], words: str) -> None:
    result = installation.run("cost", *args, check=False)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert words in line
