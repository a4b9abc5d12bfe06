"""The KVM-or-TCG choice: the real probe on this host, and the rules on given probe results."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

import bungalow.qemu
from bungalow.errors import QemuError, UserError
from bungalow.qemu.accel import (
    PROBE_SCRIPT,
    SLOW_KVM_NS_PER_INSTRUCTION,
    HostProbe,
    choose_accelerator,
    host_probe,
    host_tsc_khz,
    kvm_accel_arg,
    probe_accelerator,
    tcg_accel_arg,
)


def test_probe_is_quick_and_explains_its_choice() -> None:
    host_probe.cache_clear()
    started = time.monotonic()
    choice = probe_accelerator()
    assert time.monotonic() - started < 2.0
    speed = choice.ns_per_instruction
    fast_kvm = speed is not None and speed <= SLOW_KVM_NS_PER_INSTRUCTION
    assert choice.name == ("kvm" if fast_kvm else "tcg")
    assert choice.reason.endswith(".") and len(choice.reason) > 20
    if choice.name == "tcg":
        assert "TCG" in choice.reason
    assert choice.probe_ms is not None and choice.probe_ms < 2000


def test_probe_result_is_cached_per_process() -> None:
    assert host_probe() is host_probe()


def test_probe_script_runs_alone_and_prints_json_lines() -> None:
    completed = subprocess.run(
        [sys.executable, "-I", "-S", str(PROBE_SCRIPT)], capture_output=True, text=True, timeout=10
    )
    lines = [json.loads(line) for line in completed.stdout.splitlines()]
    assert "kvm" in lines[0] and "tsc_khz" in lines[1]
    assert isinstance(lines[0]["kvm"]["ok"], bool)


def test_host_tsc_rate_is_plausible() -> None:
    tsc_khz = host_tsc_khz()
    if tsc_khz is None:
        pytest.skip("this host neither offers KVM_GET_TSC_KHZ nor lets us run rdtsc")
    assert 100_000 < tsc_khz < 10_000_000


def test_override_tcg_needs_no_probe() -> None:
    choice = probe_accelerator("tcg")
    assert choice.name == "tcg"
    assert choice.reason == "TCG was asked for explicitly."


def test_override_kvm_on_this_host() -> None:
    probe = host_probe()
    if probe.kvm_ok:
        choice = probe_accelerator("kvm")
        assert choice.name == "kvm" and "explicitly" in choice.reason
    else:
        with pytest.raises(QemuError, match="KVM was asked for"):
            probe_accelerator("kvm")


def test_unknown_override_is_a_user_error() -> None:
    with pytest.raises(UserError, match="use kvm or tcg"):
        probe_accelerator("hvf")


def _probe(ok: bool, speed: float | None = None, problem: str = "") -> HostProbe:
    return HostProbe(ok, problem, speed, 2_100_000, 50.0)


def test_slow_kvm_means_tcg_with_numbers() -> None:
    choice = choose_accelerator(_probe(True, 880.0))
    assert choice.name == "tcg"
    assert choice.reason == (
        "KVM runs guest kernel code at 880 ns per instruction, about 880 times slower than "
        "hardware; using TCG."
    )


def test_fast_kvm_means_kvm() -> None:
    choice = choose_accelerator(_probe(True, 0.4))
    assert choice.name == "kvm"
    assert "hardware speed" in choice.reason


def test_missing_kvm_means_tcg() -> None:
    choice = choose_accelerator(_probe(False, problem="/dev/kvm is missing"))
    assert (choice.name, choice.reason) == ("tcg", "/dev/kvm is missing; using TCG.")


def test_forcing_kvm_without_kvm_is_an_error() -> None:
    probe = _probe(False, problem="/dev/kvm is not accessible (Permission denied)")
    with pytest.raises(QemuError) as caught:
        choose_accelerator(probe, "kvm")
    assert caught.value.message == (
        "KVM was asked for, but /dev/kvm is not accessible (Permission denied); use --accel "
        "tcg or leave the choice to bungalow."
    )


def test_forcing_slow_kvm_is_allowed() -> None:
    assert choose_accelerator(_probe(True, 880.0), "kvm").name == "kvm"


def test_accel_args() -> None:
    assert tcg_accel_arg() == "tcg,thread=multi,tb-size=64"
    assert tcg_accel_arg(None) == "tcg,thread=multi"
    assert kvm_accel_arg() == "kvm"


def test_package_exports_what_it_lists() -> None:
    for name in bungalow.qemu.__all__:
        assert getattr(bungalow.qemu, name) is not None
    assert sorted(bungalow.qemu.__all__) == bungalow.qemu.__all__
