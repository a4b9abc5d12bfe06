"""amd64, i386 and arm64 guests side by side: boot, a fixed CPU workload, idle memory.

Each round launches one VM of each image in turn (1 vCPU, 512M) and takes:

- boot to first exec: from starting ``bungalow launch`` to the end of the first
  ``bungalow exec VM -- true``, the moment a user's first command has run;
- CPU: the seconds :data:`WORKLOAD` (the same Python loop in every guest) measures
  inside the guest with ``time.perf_counter``: TCG's cost of each instruction set;
- idle memory: QEMU's proportional set size once the guest has settled (two samples
  a second apart within 2 %), before the workload runs.

Every figure is printed as a median over the rounds and as a ratio to amd64; the
guests run one at a time, so none competes with another for the host's CPUs.

    .venv/bin/python bench/arch.py [--rounds 3] [--loop 2000000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from _support import (
    BenchFailed,
    build_image,
    bungalow_env,
    cli,
    parse_args,
    positive,
    pss_kib,
    ratio,
    run,
    scratch_dir,
)

#: (label, image) in the order printed; the first is what the others are divided by.
IMAGES: tuple[tuple[str, str], ...] = (
    ("amd64", "debian-12"),
    ("i386", "debian-12-i386"),
    ("arm64", "debian-12-arm64"),
)
#: The same code in every guest: integer arithmetic and a loop, printed as seconds.
WORKLOAD = (
    "import time\n"
    "t = time.perf_counter()\n"
    "s = 0\n"
    "for i in range({loop}):\n"
    "    s += i * i % 7\n"
    "print(time.perf_counter() - t)\n"
)
SETTLE_TOLERANCE = 0.02
SETTLE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Figures:
    """One guest's figures in one round."""

    boot: float  # seconds, launch start to the first exec's end
    cpu: float  # seconds the workload took, measured in the guest
    idle_kib: int  # QEMU's PSS once settled


def settled_pss(pid: int) -> int:
    """QEMU's PSS once two samples a second apart are within SETTLE_TOLERANCE."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last = pss_kib(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = pss_kib(pid)
        if abs(now - last) <= SETTLE_TOLERANCE * max(last, 1):
            return now
        last = now
    raise BenchFailed(f"QEMU {pid}'s memory did not settle within {SETTLE_TIMEOUT:.0f} s")


def one_guest(env: Mapping[str, str], image: str, name: str, loop: int) -> Figures:
    began = time.monotonic()
    cli(env, "launch", name, "--image", image, "--cpus", "1", "--memory", "512M", timeout=900)
    cli(env, "exec", name, "--", "true")
    boot = time.monotonic() - began
    pid = json.loads(cli(env, "inspect", name))["pid"]
    idle = settled_pss(int(pid))
    code = WORKLOAD.format(loop=loop)
    cpu = float(cli(env, "exec", name, "--", "python3", "-c", code, timeout=1800).strip())
    cli(env, "rm", "-f", name)
    return Figures(boot=boot, cpu=cpu, idle_kib=idle)


def table(rounds: Mapping[str, Sequence[Figures]]) -> list[str]:
    """The printed lines: medians per guest, each with its ratio to the first guest's."""
    medians = {
        label: (
            statistics.median(f.boot for f in figures),
            statistics.median(f.cpu for f in figures),
            statistics.median(f.idle_kib for f in figures) / 1024,
        )
        for label, figures in rounds.items()
    }
    base = next(iter(medians.values()))
    lines = [f"{'guest':<7} {'boot to first exec':>22} {'CPU workload':>20} {'idle memory':>20}"]
    for label, (boot, cpu, idle) in medians.items():
        lines.append(
            f"{label:<7} {f'{boot:.1f}s ({ratio(boot, base[0])}x)':>22} "
            f"{f'{cpu:.2f}s ({ratio(cpu, base[1])}x)':>20} "
            f"{f'{idle:.0f}M ({ratio(idle, base[2])}x)':>20}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive, default=3)
    parser.add_argument("--loop", type=positive, default=2_000_000, help="workload iterations")
    args = parse_args(parser, {"rounds": 1, "loop": 100_000})
    with scratch_dir("arch", "[sandboxes]\npool = 0\n") as home:
        env = bungalow_env(home)
        for _, image in IMAGES:
            build_image(env, image)
        rounds: dict[str, list[Figures]] = {label: [] for label, _ in IMAGES}
        for index in range(args.rounds):
            for label, image in IMAGES:
                rounds[label].append(one_guest(env, image, f"a{index}{label}", args.loop))
        print("\n".join(table(rounds)))
        print(f"({args.rounds} rounds, medians; ratios to amd64; loop of {args.loop:,})")


if __name__ == "__main__":
    run(main)
