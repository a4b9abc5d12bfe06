"""bench/dashboard.py's pure parts: its daemon's config, reading /proc, the lines it prints.

The /proc samples are a real ``/proc/PID/stat`` line (cat's, on Linux 6.1) with its
command name changed to one holding spaces and a parenthesis, as a process may name
itself, and the process's own /proc files.
"""

from __future__ import annotations

import os
import time
import tomllib
from pathlib import Path

import pytest
from _support import BenchFailed
from dashboard import Window, bench_config, compare, cpu_ticks, rss_kib

from bungalow.host.allocation import Ratios

STAT = (
    "22095 (a (b) c) R 22093 22093 16981 0 -1 4194304 99 0 0 0 17 5 0 0 20 0 1 0 4514356 "
    "3133440 390 18446744073709551615 94537183977472 94537183997353 140735845515296 0 0 0 0 "
    "0 0 0 0 0 17 1 0 0 0 0 0"
)


def test_the_config_turns_the_dashboard_on_and_admits_every_vm() -> None:
    config = tomllib.loads(bench_config(8321, vms=50, cpus=2))
    assert config["dashboard"] == {"enabled": True, "listen": "127.0.0.1:8321"}
    assert config["sandboxes"]["pool"] == 0
    assert config["allocation"]["cpu"] == 25
    # A few VMs keep the default ratio: it is raised only as far as needed.
    assert tomllib.loads(bench_config(8321, vms=3, cpus=2))["allocation"]["cpu"] == Ratios().cpu


def test_cpu_time_is_utime_plus_stime_counted_after_the_command_name() -> None:
    assert cpu_ticks(STAT) == 17 + 5


def test_cpu_time_of_a_busy_process_grows() -> None:
    stat = Path(f"/proc/{os.getpid()}/stat")
    before = cpu_ticks(stat.read_text())
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    assert cpu_ticks(stat.read_text()) > before


def test_rss_is_read_from_status_and_a_status_without_it_is_a_sentence() -> None:
    assert rss_kib(Path("/proc/self/status").read_text()) > 1024
    assert rss_kib("Name:\tx\nVmRSS:\t    2160 kB\n") == 2160
    with pytest.raises(BenchFailed, match="VmRSS"):
        rss_kib("Name:\tkthreadd\n")


def test_a_window_gives_cpu_per_second() -> None:
    assert Window(cpu_seconds=3.0, seconds=30.0, rss_kib=1, pss_kib=1).cpu_share == 0.1


def test_the_comparison_prints_both_medians_and_their_ratio() -> None:
    line = compare("CPU", [0.12, 0.30, 0.11], [0.10, 0.10, 0.90], "CPU")
    assert line.split() == ["CPU", "open", "0.120", "CPU", "none", "0.100", "CPU", "ratio", "1.20"]
    assert compare("RSS", [1.0], [0.0], "MiB").endswith("ratio n/a")
