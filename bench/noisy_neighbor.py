"""Noisy neighbours: a latency-sensitive VM next to a disk and CPU hog, without and with limits.

VM B runs small fsync'ed writes (4 KiB, like a database's commit log) and
reports each one's latency; VM A, with as many vCPUs as the host has CPUs,
runs a disk hog (1 MiB O_DIRECT writes in a loop) and a CPU hog on every vCPU.
B is measured alone (A paused), next to A without limits, and next to A limited
live with `bungalow set` (disk IOPS and bandwidth, CPU cap and a low CPU weight).
Last, with A unlimited again, the daemon is restarted with its noisy-neighbour
policy on (`[noisy] policy = "throttle"`) and B is measured once the daemon has
held A back by itself. Medians and p99s are printed with their ratio to B alone.

    .venv/bin/python bench/noisy_neighbor.py [--writes 300] [--rounds 3] [--disk-wait 10ms]

Target (issue 4): with limits, B's p99 within 1.5x of alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNGALOW = [str(ROOT / ".venv" / "bin" / "bungalow")]

FSYNC_WRITES = """
import json, os, time
fd = os.open('/root/log', os.O_WRONLY | os.O_CREAT | os.O_APPEND)
block = b'x' * 4096
lat = []
for _ in range({n}):
    t = time.perf_counter()
    os.write(fd, block)
    os.fsync(fd)
    lat.append(time.perf_counter() - t)
    time.sleep(0.005)
print(json.dumps(lat))
"""
# setsid: the hogs outlive the exec that starts them (the agent ends an exec's process group).
HOG = (
    "setsid sh -c 'while :; do dd if=/dev/zero of=/root/hog bs=1M count=64 oflag=direct "
    "conv=fsync 2>/dev/null; done' </dev/null >/dev/null 2>&1 & "
    "for cpu in 1 2; do setsid python3 -c 'while True: pass' </dev/null >/dev/null 2>&1 & done"
)
LIMITS = ["--disk-iops", "50", "--disk-bw", "1M", "--cpu-cap", "0.2", "--cpu-weight", "10"]
NO_LIMITS = ["--disk-iops", "0", "--disk-bw", "0", "--cpu-cap", "none", "--cpu-weight", "100"]


def bungalow(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([*BUNGALOW, *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bungalow {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def measure(env: dict[str, str], writes: int) -> list[float]:
    script = FSYNC_WRITES.format(n=writes)
    return [
        float(x) for x in json.loads(bungalow(env, "exec", "db", "--", "python3", "-c", script))
    ]


def policy_round(env: dict[str, str], home: Path, args: argparse.Namespace) -> bool:
    """Restart the daemon with the throttle policy on; True once it has held A back."""
    config = home / "config.toml"
    config.write_text(
        config.read_text() + f'\n[noisy]\npolicy = "throttle"\ndisk_wait = "{args.disk_wait}"\n'
    )
    os.kill(int((home / "bungalowd.pid").read_text()), signal.SIGTERM)
    time.sleep(2)  # the VMs keep running; the next command starts a daemon with the policy
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        measure(env, 50)  # B keeps writing, so the daemon sees it wait
        events = json.loads(bungalow(env, "inspect", "hog"))["events"]
        if any(e["kind"] == "throttled" for e in events):
            time.sleep(2)
            return True
    return False


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limits", default=" ".join(LIMITS), help="`bungalow set` options for A")
    parser.add_argument(
        "--disk-wait", default="10ms", help="the policy's disk_wait: B waits above this"
    )
    args = parser.parse_args()
    limits = args.limits.split()
    sys.path.insert(0, str(ROOT / "src"))
    from bungalow.paths import DataDir

    home = Path(tempfile.mkdtemp(prefix="bgw-noisy-", dir="/tmp"))
    (home / "config.toml").write_text("[sandboxes]\npool = 0\n")
    images = os.environ.get("BUNGALOW_IMAGES") or str(DataDir.from_env().images)
    env = {**os.environ, "BUNGALOW_HOME": str(home), "BUNGALOW_IMAGES": images}
    samples: dict[str, list[float]] = {"alone": [], "unlimited": [], "limited": [], "policy": []}
    try:
        bungalow(env, "image", "build", "debian-12")
        bungalow(env, "launch", "db")
        # A has as many vCPUs as this host has CPUs: unlimited, it can take them all.
        bungalow(env, "launch", "hog", "--cpus", str(os.cpu_count() or 2))
        bungalow(env, "exec", "hog", "--", "sh", "-c", HOG)
        running = bungalow(env, "exec", "hog", "--", "sh", "-c", "pgrep -c 'dd|python3' || true")
        if int(running.strip() or 0) < 3:
            sys.exit("the hogs in VM A did not start")
        measure(env, 20)  # warm the guest's python and the log file
        for index in range(args.rounds):
            bungalow(env, "pause", "hog")
            samples["alone"] += measure(env, args.writes)
            bungalow(env, "resume", "hog")
            time.sleep(2)
            samples["unlimited"] += measure(env, args.writes)
            bungalow(env, "set", "hog", *limits)
            time.sleep(2)
            samples["limited"] += measure(env, args.writes)
            bungalow(env, "set", "hog", *NO_LIMITS)
            line = "  ".join(
                f"{case} p50 {statistics.median(v) * 1000:.1f} ms p99 {p99(v) * 1000:.1f} ms"
                for case, v in samples.items()
                if v
            )
            print(f"after round {index + 1}: {line}", flush=True)
        held = policy_round(env, home, args)
        if held:
            for _ in range(args.rounds):
                samples["policy"] += measure(env, args.writes)
        events = json.loads(bungalow(env, "inspect", "hog"))["events"]
        marked = [e["message"] for e in events if e["kind"] in ("noisy", "throttled")]
        print(
            f"the daemon marked or held A {len(marked)} time(s)"
            + (f"; last: {marked[-1]}" if marked else "")
        )
        alone50, alone99 = statistics.median(samples["alone"]), p99(samples["alone"])
        print(f"\nB: {args.writes} fsync'ed 4 KiB writes a round, {args.rounds} rounds")
        print(f"A limited to: {' '.join(limits)}")
        for case, values in samples.items():
            if not values:
                print(f"  {case:9} (the policy never held A)")
                continue
            m, p = statistics.median(values), p99(values)
            print(
                f"  {case:9} median {m * 1000:6.1f} ms ({m / alone50:4.2f}x)   "
                f"p99 {p * 1000:6.1f} ms ({p / alone99:4.2f}x)"
                + ("   target p99 <= 1.50x" if case in ("limited", "policy") else "")
            )
    finally:
        for name in ("db", "hog"):
            subprocess.run([*BUNGALOW, "rm", name], env=env, capture_output=True)
        pidfile = home / "bungalowd.pid"
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
