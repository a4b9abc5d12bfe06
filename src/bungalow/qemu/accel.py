"""Choosing between KVM and TCG, and saying why.

``/dev/kvm`` existing is not enough: under a nested, software KVM guest kernel
code runs about a thousand times slower than on hardware, and a Linux guest
there is far slower than under TCG. So the choice rests on a measurement: a
short loop run in guest kernel mode through the KVM API (see ``_probe.py``),
done once per process in a child process that is killed if it hangs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bungalow.arch import ARCH_INFO, Arch, host_arch, runs_natively
from bungalow.errors import QemuError, UserError

AccelName = Literal["kvm", "tcg"]
ACCEL_NAMES: tuple[AccelName, ...] = ("kvm", "tcg")

# A dec/jnz loop retires about one instruction per cycle on hardware, well under 1 ns.
HARDWARE_NS_PER_INSTRUCTION = 1.0
# Software KVM measures 600-1000 ns here; hardware, even nested, a few ns at most.
SLOW_KVM_NS_PER_INSTRUCTION = 25.0
PROBE_TIMEOUT_SECONDS = 5.0
PROBE_SCRIPT = Path(__file__).with_name("_probe.py")

# The translation buffer QEMU allocates for TCG, in MiB (see tcg_accel_arg).
TCG_TB_SIZE_MIB = 64


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator to use and the one sentence that explains the choice to a user."""

    name: AccelName
    reason: str
    probe_ms: float | None = None
    ns_per_instruction: float | None = None


@dataclass(frozen=True)
class HostProbe:
    """What the probe child process found; see ``_probe.py``."""

    kvm_ok: bool
    kvm_problem: str
    ns_per_instruction: float | None
    tsc_khz: int | None
    elapsed_ms: float


def probe_accelerator(override: str | None = None) -> AccelChoice:
    """KVM when it runs guest kernel code at hardware speed, else TCG; ``override`` forces one.

    The probe runs once per process (see :func:`host_probe`); forcing TCG skips it.
    """
    if override in (None, "kvm"):
        return choose_accelerator(host_probe(), override)
    return choose_accelerator(_NOT_PROBED, override)


_NOT_PROBED = HostProbe(False, "KVM was not probed", None, None, 0.0)


def choose_accelerator(probe: HostProbe, override: str | None = None) -> AccelChoice:
    """The choice a probe result leads to.

    Forcing ``kvm`` where KVM cannot run at all is an error now, rather than a
    less helpful one from QEMU later; forcing it on a slow KVM is allowed (the
    user asked).
    """
    if override is not None and override not in ACCEL_NAMES:
        raise UserError(f"The accelerator {override!r} is not known; use kvm or tcg.")
    if override == "tcg":
        return AccelChoice("tcg", "TCG was asked for explicitly.")
    speed = probe.ns_per_instruction
    if not probe.kvm_ok or speed is None:
        if override == "kvm":
            raise QemuError(
                f"KVM was asked for, but {probe.kvm_problem}; use --accel tcg or leave "
                "the choice to bungalow."
            )
        reason = f"{_capitalize(probe.kvm_problem)}; using TCG."
        return AccelChoice("tcg", reason, probe.elapsed_ms)
    if override == "kvm":
        reason = (
            f"KVM was asked for explicitly; it runs guest kernel code at {speed:.1f} ns "
            "per instruction."
        )
        return AccelChoice("kvm", reason, probe.elapsed_ms, speed)
    if speed > SLOW_KVM_NS_PER_INSTRUCTION:
        slower = speed / HARDWARE_NS_PER_INSTRUCTION
        reason = (
            f"KVM runs guest kernel code at {speed:.0f} ns per instruction, about "
            f"{slower:.0f} times slower than hardware; using TCG."
        )
        return AccelChoice("tcg", reason, probe.elapsed_ms, speed)
    reason = f"KVM runs guest kernel code at {speed:.1f} ns per instruction, at hardware speed."
    return AccelChoice("kvm", reason, probe.elapsed_ms, speed)


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


@functools.cache
def host_probe() -> HostProbe:
    """Run the probe once per process; a probe that hangs or crashes counts as "no KVM"."""
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            [sys.executable, "-I", "-S", str(PROBE_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return _failed_probe(
            f"the KVM probe did not finish in {PROBE_TIMEOUT_SECONDS:.0f} s", started
        )
    except OSError:
        return _failed_probe("the KVM probe could not be run", started)
    result = _parse_probe_output(completed.stdout)
    kvm = result.get("kvm")
    if not isinstance(kvm, dict):
        return _failed_probe("the KVM probe crashed", started)
    tsc_khz = result.get("tsc_khz")
    speed = kvm.get("ns_per_instruction")
    return HostProbe(
        kvm_ok=kvm.get("ok") is True and isinstance(speed, float),
        kvm_problem=str(kvm.get("reason", "the KVM probe gave no answer")),
        ns_per_instruction=speed if isinstance(speed, float) else None,
        tsc_khz=tsc_khz if isinstance(tsc_khz, int) and tsc_khz > 0 else None,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )


def _parse_probe_output(stdout: str) -> dict[str, object]:
    """Merge the probe's JSON lines; a line cut short by a crash is skipped."""
    merged: dict[str, object] = {}
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                merged.update(value)
    return merged


def _failed_probe(problem: str, started: float) -> HostProbe:
    elapsed_ms = (time.perf_counter() - started) * 1000
    return HostProbe(False, problem, None, None, elapsed_ms)


def host_tsc_khz() -> int | None:
    """The rate a TCG guest's TSC ticks at (the host's), for ``tsc_early_khz=``."""
    return host_probe().tsc_khz


def tcg_accel_arg(tb_size_mib: int | None = TCG_TB_SIZE_MIB) -> str:
    """The ``-accel`` value for TCG: one host thread per vCPU, and a bounded translation buffer.

    QEMU 7.2 reserves 1 GiB for translated code by default and only flushes it
    when full. Only the touched part is resident, but a guest that keeps loading
    new code keeps touching more: measured here, a busybox guest copying and
    running fresh binaries grew it by 3 MB/s to 320 MB in 80 s. 64 MiB holds
    everything an idle Linux guest translates (38 MB) and ran that workload as
    fast as the default (32 MiB: 3% slower, 16 MiB: 11% and 1 s more to boot).
    """
    if tb_size_mib is None:
        return "tcg,thread=multi"
    return f"tcg,thread=multi,tb-size={tb_size_mib}"


def kvm_accel_arg() -> str:
    return "kvm"


def accel_arg(name: str) -> str:
    """The ``-accel`` value for ``name`` ("kvm" or "tcg")."""
    if name == "kvm":
        return kvm_accel_arg()
    if name == "tcg":
        return tcg_accel_arg()
    raise UserError(f"The accelerator {name!r} is not known; use kvm or tcg.")


def for_arch(choice: AccelChoice, arch: Arch) -> AccelChoice:
    """The accelerator an ``arch`` guest gets where ``choice`` is the host's own.

    KVM only ever runs the host CPU's own architecture (and i386 on x86_64); any
    other guest is emulated by TCG whatever the probe found.
    """
    if runs_natively(arch):
        return choice
    binary = ARCH_INFO[arch].qemu_binary
    return AccelChoice(
        "tcg",
        f"{arch} guests are emulated on this {host_arch()} host ({binary}); KVM runs only "
        "the host's own architecture; using TCG.",
    )
