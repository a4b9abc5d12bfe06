"""Per-VM metrics move when the guest works: `top`, the JSON history and Prometheus /metrics."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Env
from tests.support import wait_until

pytestmark = pytest.mark.vm


def _prometheus(bw: Env) -> dict[str, float]:
    values = {}
    for line in bw.get("/metrics").text.splitlines():
        if line.startswith("bungalow_vm_") and 'vm="busy"' in line:
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = float(value)
    return values


def _history(bw: Env) -> list[dict[str, Any]]:
    answer = bw.get("/v1/vms/busy/metrics")
    return list(answer.json()["history"]) if answer.status_code == 200 else []


def _sampled_after(bw: Env, moment: float, count: int = 1) -> bool:
    """Whether ``count`` samples were taken after ``moment`` (the sampler's wall clock)."""
    return sum(bool(sample["time"] > moment) for sample in _history(bw)) >= count


def test_metrics_move_when_the_guest_works(bw: Env) -> None:
    bw.run("launch", "busy")
    wait_until("two samples", lambda: len(_history(bw)) >= 2)
    before = _prometheus(bw)
    assert before["bungalow_vm_memory_rss_bytes"] > 50 << 20
    bw.run(
        "exec", "busy", "--", "sh", "-c",
        "dd if=/dev/zero of=/root/w bs=1M count=20 oflag=direct 2>/dev/null; "
        "timeout 3 python3 -c 'while True: pass'; getent hosts deb.debian.org >/dev/null",
    )  # fmt: skip
    done = time.time()
    wait_until("a sample taken after the work", lambda: _sampled_after(bw, done))
    after = _prometheus(bw)
    # 3 s of spinning is at least 1 s of CPU even beside a CPU hog on a 2-CPU host (1.75 s
    # measured there); an idle guest costs its QEMU about 0.05 s in that time.
    assert after["bungalow_vm_cpu_seconds_total"] > before["bungalow_vm_cpu_seconds_total"] + 1
    written = (
        after["bungalow_vm_block_write_bytes_total"] - before["bungalow_vm_block_write_bytes_total"]
    )
    assert written >= 20 << 20
    assert (
        after["bungalow_vm_block_write_requests_total"]
        > before["bungalow_vm_block_write_requests_total"]
    )
    assert (
        after["bungalow_vm_network_transmit_packets_total"]
        > before["bungalow_vm_network_transmit_packets_total"]
    )
    assert after["bungalow_vm_noisy"] == 0
    top = bw.run("top", "--once").stdout
    assert "busy" in top and "STEAL" in top
    history = _history(bw)
    assert len(history) >= 4
    assert history[-1]["cpu.time"] > history[0]["cpu.time"]
    assert {"vcpu.delay", "balloon.rss", "block.wr.reqs", "net.rx.bytes"} <= set(history[-1])
