"""Memory a guest frees: what stays on the host, with the balloon's free page reporting on and off.

Side by side in one run, a daemon with ``[memory] balloon = false`` and one with the
default: in each, a cold-booted VM and a clone of its snapshot (whose RAM is the
snapshot's file mapped privately, so its QEMU refuses to discard: qemu/private_ram.py;
expect the clone to keep what it frees) write 1 GiB in the guest and free it. For each,
the QEMU's RSS before, while the GiB is held and once it stops falling (polled, at
most ``--settle`` seconds), and what stays as a share of the GiB.

    .venv/bin/python bench/balloon.py [--memory 1536M] [--settle 60] [--quick]

Target (issue 15): after a guest frees 1 GB, at most 10% stays on the host.
:func:`freed_gib_stays` is the measure, for bench/overhead.py to reuse.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path

from _support import bungalow_env, cli, parse_args, ratio, run, scratch_dir

GIB = 1 << 30
MIB = 1 << 20
#: Writes every page of 1 GiB, says so, and frees it when /tmp/free appears.
FILL = (
    "import os, time\n"
    "b = bytearray(b'\\x01') * (1 << 30)\n"
    "open('/tmp/held', 'w').close()\n"
    "while not os.path.exists('/tmp/free'): time.sleep(0.1)\n"
)
SIDES = {
    "off": "[sandboxes]\npool = 0\n[memory]\nballoon = false\n",
    "on": "[sandboxes]\npool = 0\n",
}


def rss(home: Path, env: Mapping[str, str], name: str) -> int:
    """Bytes of the VM's QEMU resident now."""
    vm_id = json.loads(cli(env, "inspect", name))["id"]
    pid = (home / "vms" / vm_id / "run" / "qemu.pid").read_text().strip()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def freed_gib_stays(
    home: Path, env: Mapping[str, str], name: str, settle: float = 60.0
) -> tuple[int, int, int]:
    """(RSS before, RSS while 1 GiB is held, RSS once it stops falling) of the VM ``name``.

    The fill script runs once with nothing to fill first, so that "before" already has
    what starting python3 brings in (a clone reads it from its snapshot's file).
    """
    (home / "fill.py").write_text(FILL)
    cli(env, "cp", str(home / "fill.py"), f"{name}:/root/fill.py")
    cli(env, "exec", name, "--", "python3", "-c", "import os, time")
    before = rss(home, env, name)
    cli(env, "exec", name, "--", "sh", "-c", "rm -f /tmp/free /tmp/held; "
        "python3 /root/fill.py >/dev/null 2>&1 &")  # fmt: skip
    while "held" not in cli(env, "exec", name, "--", "ls", "/tmp").split():
        time.sleep(0.5)
    held = rss(home, env, name)
    cli(env, "exec", name, "--", "touch", "/tmp/free")
    deadline, last, still = time.monotonic() + settle, held, 0
    while time.monotonic() < deadline and still < 5:  # 5 s without a change of 4 MiB
        time.sleep(1)
        now = rss(home, env, name)
        still = still + 1 if abs(now - last) < 4 * MIB else 0
        last = now
    return before, held, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", default="1536M", help="each VM's memory (at least 1280M)")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait at most")
    args = parse_args(parser, {"settle": 20.0})
    print(f"{'side':<5} {'VM':<6} {'before':>8} {'held':>8} {'after':>8} {'stays':>7}")
    for side, config in SIDES.items():
        with scratch_dir(f"balloon-{side}", config) as home:
            env = bungalow_env(home)
            cli(env, "launch", "cold", "--memory", args.memory)
            cli(env, "snapshot", "create", "cold", "s")
            cli(env, "clone", "cold", "clone", "--snapshot", "s")
            for name in ("cold", "clone"):
                before, held, after = freed_gib_stays(home, env, name, args.settle)
                stays = ratio(after - before, GIB, ".1%")
                print(
                    f"{side:<5} {name:<6} {before // MIB:>7}M {held // MIB:>7}M "
                    f"{after // MIB:>7}M {stays:>7}"
                )


if __name__ == "__main__":
    run(main)
