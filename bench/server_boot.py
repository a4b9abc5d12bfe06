"""Boot-to-agent and boot-to-running: a server image (systemd) next to the micro image.

Each round launches one VM of each image, interleaved, and takes from the guest itself:

- boot to agent: bungalowd's ``guest`` phase (daemon/vms/timeline.py), from QMP
  connected to the agent answering: what ``launch`` waits for;
- launch: from starting ``bungalow launch`` to its exit;
- boot to running (server only): from starting ``bungalow launch`` to the end of
  ``bungalow wait`` (systemd says running or degraded), and systemd's own
  ``FinishTimestampMonotonic`` (seconds since the kernel started).

The first boot of a server VM makes its SSH host keys (three key pairs, seconds of TCG
CPU), so each round is a fresh VM's first boot, as a user's ``launch`` is.

    .venv/bin/python bench/server_boot.py [--rounds 3] [--image debian-12-server] [--quick]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

from _support import build_image, bungalow_env, cli, parse_args, positive, run, scratch_dir

_BOOTED = re.compile(r"(\S+) booted: .* guest=([0-9.]+)")


def guest_phase(home: Path, name: str) -> float:
    """The ``guest`` seconds of ``name``'s last boot line in bungalowd's log."""
    seconds = [
        float(match.group(2))
        for match in _BOOTED.finditer((home / "bungalowd.log").read_text(errors="replace"))
        if match.group(1) == name
    ]
    return seconds[-1]


def one_round(
    home: Path, env: dict[str, str], image: str, name: str, server: bool
) -> dict[str, float]:
    began = time.monotonic()
    cli(env, "launch", name, "--image", image, timeout=900)
    launched = time.monotonic() - began
    figures = {"agent": guest_phase(home, name), "launch": launched}
    if server:
        cli(env, "wait", name, "--timeout", "30m", timeout=1900)
        figures["running"] = time.monotonic() - began
        finish = cli(env, "exec", name, "--", "systemctl", "show", "-P", "FinishTimestampMonotonic")
        figures["systemd"] = int(finish.strip()) / 1e6
    cli(env, "rm", "-f", name)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive, default=3)
    parser.add_argument("--image", default="debian-12-server")
    parser.add_argument("--micro", default="debian-12")
    args = parse_args(parser, {"rounds": 1})
    with scratch_dir("srv") as home:
        env = bungalow_env(home)
        build_image(env, args.micro)
        build_image(env, args.image)
        rounds: dict[str, list[dict[str, float]]] = {args.micro: [], args.image: []}
        for index in range(args.rounds):
            for image, server in ((args.micro, False), (args.image, True)):
                rounds[image].append(one_round(home, env, image, f"b{index}{int(server)}", server))
        print(
            f"{'image':<20} {'boot to agent':>14} {'launch':>8} {'to running':>11} {'systemd':>8}"
        )
        for image, figures in rounds.items():

            def median(key: str, figures: list[dict[str, float]] = figures) -> str:
                values = [f[key] for f in figures if key in f]
                return f"{statistics.median(values):.1f}s" if values else "-"

            print(
                f"{image:<20} {median('agent'):>14} {median('launch'):>8} "
                f"{median('running'):>11} {median('systemd'):>8}"
            )


if __name__ == "__main__":
    run(main)
