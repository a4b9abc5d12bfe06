"""Sandboxes: start from a snapshot against a cold boot, memory of clones, exec round trip.

Everything runs through the Python SDK against a real bungalowd, side by side
in one run, rounds interleaved so the shared machine's noise hits every side:

- *cold*:     ``Sandbox(warm=False)`` boots the image;
- *snapshot*: ``Sandbox()`` clones the pre-booted template snapshot, against a
              daemon configured with no pool (``[sandboxes] pool = 0``);
- *pool*:     ``Sandbox()`` against a daemon keeping one sandbox started (the
              default ``pool = 1``); the bench waits for the refill between rounds.

Each is timed from ``Sandbox(...)`` to the first exec's result, for the
issue's ``python3 -c 'print(6*7)'`` and for ``true`` (which leaves out the
guest's own 0.2-0.3 s of starting python3 under TCG). Then N idle clones of one
snapshot against N cold-booted VMs of the same shape: the sum of the QEMU
processes' PSS and the drop in the host's MemAvailable. Last, the exec round
trip of ``true`` on a running sandbox.

    .venv/bin/python bench/sandbox.py [--rounds 5] [--clones 20] [--memory 512M]

Targets (issue 3): warm at most 1/10 of cold; clones' memory at most 40%.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bungalow import Sandbox  # noqa: E402
from bungalow.host.allocation import Ratios  # noqa: E402

PY = "python3 -c 'print(6*7)'"
IDLE_SECONDS = 15.0


def cold_config(clones: int) -> str:
    """The config of the daemon behind *cold*, *snapshot* and the memory and exec steps.

    No pool: a sandbox waiting in it would be one more QEMU in the memory sums and
    one more guest taking CPU from the sides being timed. The memory step keeps
    ``clones`` idle one-vCPU VMs at once, more than the default 4 vCPUs per CPU
    allows on a small host, so the vCPU ratio is raised to the smallest whole
    ratio that admits them: idle VMs use none of the CPU promised to them, which
    is what overcommitting vCPUs is for. It is not raised beyond that, so that a
    step leaving VMs behind is refused rather than measuring more VMs than it
    says. Memory keeps its ratio of 1.0: memory is what the step measures, and
    VMs the host could not hold if each used its promise are refused, not swapped.
    """
    ratio = max(Ratios().cpu, math.ceil(clones / len(os.sched_getaffinity(0))))
    return f"[sandboxes]\npool = 0\n\n[allocation]\ncpu = {ratio:g}\n"


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def qemu_pids(home: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmdline and str(home).encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def timed(make: Callable[[], Sandbox], command: str | list[str]) -> tuple[float, float]:
    """Seconds to the Sandbox object, and to the first exec's result; the sandbox is deleted."""
    began = time.perf_counter()
    with make() as sandbox:
        created = time.perf_counter() - began
        result = sandbox.exec(command)
        total = time.perf_counter() - began
        assert result.exit_code == 0, result
    return created, total


def wait_for_pool(home: Path) -> None:
    """Until the daemon has put a started, warmed-up sandbox back in its pool."""
    from bungalow.client.http import Client
    from bungalow.paths import DataDir

    with Client(DataDir(home), autostart=False) as client:
        deadline = time.monotonic() + 60
        while not any(vm["pooled"] for vm in client.list_vms()):
            if time.monotonic() > deadline:
                sys.exit("the sandbox pool was not refilled within 60 s")
            time.sleep(0.2)
    time.sleep(3)  # its warm-up command, and a moment of quiet


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.0f} ms"


def start_times(
    homes: dict[str, Path], memory: str, rounds: int
) -> dict[tuple[str, str], list[float]]:
    makers: dict[str, Callable[[], Sandbox]] = {
        "cold": lambda: Sandbox(home=homes["cold"], memory=memory, warm=False),
        "snapshot": lambda: Sandbox(home=homes["cold"], memory=memory),
        "pool": lambda: Sandbox(home=homes["pool"], memory=memory),
    }
    print("warm-up: making each daemon's template once (a boot and a snapshot)...", flush=True)
    for kind in ("snapshot", "pool"):
        began = time.perf_counter()
        timed(makers[kind], "true")
        print(f"  {kind}: first sandbox {time.perf_counter() - began:.1f} s", flush=True)
    results: dict[tuple[str, str], list[float]] = {}
    for index in range(rounds):
        for command, label in ((PY, "python3"), (["true"], "true")):
            line = [f"round {index + 1} {label:8}"]
            for kind, make in makers.items():
                created, total = timed(make, command)
                if kind == "pool":
                    wait_for_pool(homes["pool"])
                results.setdefault((kind, label), []).append(total)
                results.setdefault((kind, "created"), []).append(created)
                line.append(f"{kind} {total:.2f}s")
            print("  ".join(line), flush=True)
    return results


def memory_of(home: Path, make: Callable[[], Sandbox], count: int) -> tuple[int, int]:
    """Sum of QEMU PSS and MemAvailable drop (KiB) with ``count`` idle sandboxes."""
    subprocess.run(["sync"], check=True)
    before = mem_available_kib()
    boxes = []
    try:
        for _ in range(count):
            boxes.append(make())
        time.sleep(IDLE_SECONDS)
        pss = sum(pss_kib(pid) for pid in qemu_pids(home))
        drop = before - mem_available_kib()
    finally:
        for box in boxes:
            box.kill()
    return pss, drop


def round_trips(home: Path, memory: str, count: int = 200) -> list[float]:
    with Sandbox(home=home, memory=memory) as sandbox:
        sandbox.exec(["true"])
        samples = []
        for _ in range(count):
            began = time.perf_counter()
            sandbox.exec(["true"])
            samples.append(time.perf_counter() - began)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clones", type=int, default=20)
    parser.add_argument("--memory", default="512M")
    args = parser.parse_args()

    from bungalow.paths import DataDir

    os.environ.setdefault("BUNGALOW_IMAGES", str(DataDir.from_env().images))
    homes = {
        kind: Path(tempfile.mkdtemp(prefix=f"bgw-{kind}-", dir="/tmp")) for kind in ("cold", "pool")
    }
    (homes["cold"] / "config.toml").write_text(cold_config(args.clones))
    subprocess.run(
        [str(ROOT / ".venv/bin/bungalow"), "image", "build", "debian-12"],
        env={**os.environ, "BUNGALOW_HOME": str(homes["cold"])},
        check=True,
    )
    try:
        times = start_times(homes, args.memory, args.rounds)
        print()
        print(f"from Sandbox(...) to the first exec's result, median of {args.rounds}:")
        for label in ("python3", "true"):
            cold = statistics.median(times[("cold", label)])
            for kind in ("snapshot", "pool"):
                warm = statistics.median(times[(kind, label)])
                print(
                    f"  {label:8} {kind:8} {warm * 1000:6.0f} ms  cold {cold * 1000:6.0f} ms"
                    f"  ratio {warm / cold:.3f} (target <= 0.100)"
                )
        for kind in ("cold", "snapshot", "pool"):
            print(f"  Sandbox() alone, {kind:8} {median_ms(times[(kind, 'created')])}")

        print(f"\n{args.clones} idle sandboxes of {args.memory}, {IDLE_SECONDS:.0f} s after start:")
        c_pss, c_drop = memory_of(
            homes["cold"], lambda: Sandbox(home=homes["cold"], memory=args.memory), args.clones
        )
        b_pss, b_drop = memory_of(
            homes["cold"],
            lambda: Sandbox(home=homes["cold"], memory=args.memory, warm=False),
            args.clones,
        )
        for what, clones, cold, target in (
            ("QEMU PSS, sum    ", c_pss, b_pss, " (target <= 0.40)"),
            ("MemAvailable drop", c_drop, b_drop, ""),
        ):
            print(
                f"  {what} clones {clones / 1024:6.0f} MiB  cold boots {cold / 1024:6.0f} MiB"
                f"  ratio {clones / cold:.2f}{target}"
            )

        samples = sorted(round_trips(homes["cold"], args.memory))
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(
            f"\nexec round trip of `true` through the SDK ({len(samples)} runs): "
            f"median {statistics.median(samples) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        )
    finally:
        for home in homes.values():
            for pid in qemu_pids(home):
                os.kill(pid, signal.SIGKILL)
            pidfile = home / "bungalowd.pid"
            if pidfile.exists():
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
