"""Admission through the CLI: allocation ratios refuse a VM the host has not got room for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import NO_KSM, Env

pytestmark = pytest.mark.vm


def _memory_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def test_memory_beyond_the_ratio_is_refused_and_freed_by_stopping(bw: Env) -> None:
    ratio = (1 << 30) / _memory_total()  # the host may promise 1G of memory in all
    (bw.home / "config.toml").write_text(
        f"[sandboxes]\npool = 0\n[allocation]\nmemory = {ratio}\n" + NO_KSM
    )
    bw.run("launch", "first", "--memory", "600M")
    refused = bw.run("launch", "second", "--memory", "600M", check=False)
    assert refused.returncode == 1
    assert "Not enough memory on this host for the VM second: asked for 600M" in refused.stderr
    assert "left" in refused.stderr and "[allocation] memory" in refused.stderr
    assert "second" not in bw.run("ls", "-q").stdout.split()
    assert len(bw.qemu_pids()) == 1
    host = bw.run("host", "info").stdout
    assert "600M allocated" in host
    bw.run("stop", "first")
    bw.run("launch", "second", "--memory", "600M")
    refused = bw.run("start", "first", check=False)
    assert refused.returncode == 1 and "Not enough memory" in refused.stderr
