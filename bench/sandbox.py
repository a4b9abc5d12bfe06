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

    .venv/bin/python bench/sandbox.py [--rounds 5] [--clones 20] [--round-trips 200]
                                      [--memory 512M] [--quick]

Targets (issue 3): warm at most 1/10 of cold; clones' memory at most 40%.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from _support import (
    BenchFailed,
    build_image,
    bungalow_env,
    images_dir,
    p99,
    parse_args,
    positive,
    processes_naming,
    pss_kib,
    ratio,
    run,
    scratch_dir,
)

from bungalow import Sandbox
from bungalow.client.http import Client
from bungalow.host.allocation import Ratios
from bungalow.paths import DataDir

PY = "python3 -c 'print(6*7)'"
IDLE_SECONDS = 15.0
Times = dict[tuple[str, str], list[float]]


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


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise BenchFailed("/proc/meminfo has no MemAvailable line")


def qemu_pids(home: Path) -> list[int]:
    return [pid for pid, args in processes_naming(home).items() if b"qemu-system" in args[0]]


def timed(make: Callable[[], Sandbox], command: str | list[str]) -> tuple[float, float]:
    """Seconds to the Sandbox object, and to the first exec's result; the sandbox is deleted."""
    began = time.perf_counter()
    with make() as sandbox:
        created = time.perf_counter() - began
        result = sandbox.exec(command)
        total = time.perf_counter() - began
        if result.exit_code != 0:
            raise BenchFailed(f"{command!r} in a sandbox exited {result.exit_code}: {result}")
    return created, total


def wait_for_pool(home: Path) -> None:
    """Until the daemon has put a started, warmed-up sandbox back in its pool."""
    with Client(DataDir(home), autostart=False) as client:
        deadline = time.monotonic() + 60
        while not any(vm["pooled"] for vm in client.list_vms()):
            if time.monotonic() > deadline:
                raise BenchFailed("the sandbox pool was not refilled within 60 s")
            time.sleep(0.2)
    time.sleep(3)  # its warm-up command, and a moment of quiet


def start_times(homes: dict[str, Path], memory: str, rounds: int) -> Times:
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
    results: Times = {}
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


def print_start_times(times: Times, rounds: int) -> None:
    print(f"\nfrom Sandbox(...) to the first exec's result, median of {rounds}:")
    for label in ("python3", "true"):
        cold = statistics.median(times[("cold", label)])
        for kind in ("snapshot", "pool"):
            warm = statistics.median(times[(kind, label)])
            print(
                f"  {label:8} {kind:8} {warm * 1000:6.0f} ms  cold {cold * 1000:6.0f} ms"
                f"  ratio {warm / cold:.3f} (target <= 0.100)"
            )
    for kind in ("cold", "snapshot", "pool"):
        created = statistics.median(times[(kind, "created")])
        print(f"  Sandbox() alone, {kind:8} {created * 1000:7.0f} ms")


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


def memory_step(home: Path, memory: str, clones: int) -> None:
    print(f"\n{clones} idle sandboxes of {memory}, {IDLE_SECONDS:.0f} s after start:", flush=True)
    c_pss, c_drop = memory_of(home, lambda: Sandbox(home=home, memory=memory), clones)
    b_pss, b_drop = memory_of(home, lambda: Sandbox(home=home, memory=memory, warm=False), clones)
    for what, clone, cold, target in (
        ("QEMU PSS, sum    ", c_pss, b_pss, " (target <= 0.40)"),
        ("MemAvailable drop", c_drop, b_drop, ""),
    ):
        print(
            f"  {what} clones {clone / 1024:6.0f} MiB  cold boots {cold / 1024:6.0f} MiB"
            f"  ratio {ratio(clone, cold)}{target}"
        )


def round_trip_step(home: Path, memory: str, count: int) -> None:
    with Sandbox(home=home, memory=memory) as sandbox:
        sandbox.exec(["true"])
        samples = []
        for _ in range(count):
            began = time.perf_counter()
            sandbox.exec(["true"])
            samples.append(time.perf_counter() - began)
    print(
        f"\nexec round trip of `true` through the SDK ({len(samples)} runs): "
        f"median {statistics.median(samples) * 1000:.1f} ms, p99 {p99(samples) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive, default=5)
    parser.add_argument("--clones", type=positive, default=20)
    parser.add_argument("--round-trips", type=positive, default=200)
    parser.add_argument("--memory", default="512M")
    args = parse_args(parser, {"rounds": 1, "clones": 3, "round_trips": 20})

    os.environ["BUNGALOW_IMAGES"] = str(images_dir())  # for the daemons the SDK starts
    with scratch_dir("cold", cold_config(args.clones)) as cold, scratch_dir("pool") as pool:
        build_image(bungalow_env(cold))
        times = start_times({"cold": cold, "pool": pool}, args.memory, args.rounds)
        print_start_times(times, args.rounds)
        memory_step(cold, args.memory, args.clones)
        round_trip_step(cold, args.memory, args.round_trips)


if __name__ == "__main__":
    run(main)
