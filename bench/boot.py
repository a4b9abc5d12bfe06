"""Boot-to-exec time and idle memory: bungalow against a hand-written QEMU command line.

Both sides boot the same kernel, initramfs and image (through a fresh qcow2
overlay each round) with the same CPU count and memory, rounds interleaved so
that the machine's noise hits both alike. bungalow's time runs from the
`bungalow launch` command to the end of the first successful `bungalow exec`;
plain QEMU's from its process start to the agent's readiness line on the serial
port. Memory is the QEMU process's PSS once the guest has sat idle.

    .venv/bin/python bench/boot.py [--rounds 5] [--memory 512M] [--quick]

Targets (issue 2): time ratio at most 1.15, memory ratio at most 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from _support import (
    BenchFailed,
    build_image,
    bungalow_env,
    cli,
    images_dir,
    parse_args,
    positive,
    pss_kib,
    run,
    scratch_dir,
)

from bungalow.images.store import ImageStore
from bungalow.qemu.accel import host_tsc_khz

READY = b"bungalow-agent: ready"
READY_TIMEOUT = 120.0
IDLE_SECONDS = 8.0
#: The first rounds also let each guest sit idle for the memory figure.
MEMORY_ROUNDS = 3
#: Seconds from start to the first exec (or readiness), and idle PSS in KiB if measured.
Sample = tuple[float, int | None]


def bungalow_round(env: dict[str, str], name: str, memory: str, measure_memory: bool) -> Sample:
    started = time.perf_counter()
    cli(env, "launch", name, "--memory", memory)
    cli(env, "exec", name, "--", "true")
    elapsed = time.perf_counter() - started
    pss = None
    if measure_memory:
        pid = json.loads(cli(env, "inspect", name))["pid"]
        time.sleep(IDLE_SECONDS)
        pss = pss_kib(pid)
    cli(env, "rm", name)
    return elapsed, pss


@dataclass(frozen=True)
class PlainGuest:
    """What plain QEMU boots: the image's disk, kernel and initramfs, memory, TSC hint."""

    base: Path
    kernel: Path
    initrd: Path
    memory: str
    tsc_khz: int

    def argv(self, disk: Path, workdir: Path) -> list[str]:
        """What a person would write by hand for the same guest: no QMP, no daemon.

        The kernel command line is the same as bungalow's, TSC hint included: without
        it microvm guests under TCG hang calibrating the TSC on a busy host.
        """
        cmdline = (
            "console=ttyS0 quiet panic=-1 root=/dev/vda bungalow.hostname=plain "
            f"bungalow.ip=10.0.2.15/24 bungalow.gw=10.0.2.2 tsc_early_khz={self.tsc_khz}"
        )
        return [
            "qemu-system-x86_64",
            "-M", "microvm,acpi=on", "-accel", "tcg,thread=multi", "-cpu", "max",
            "-smp", "1", "-m", self.memory,
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", "stdio",
            "-kernel", str(self.kernel), "-initrd", str(self.initrd),
            "-append", cmdline,
            "-drive", f"file={disk},if=none,id=d0,format=qcow2,cache=none,aio=native",
            "-device", "virtio-blk-device,drive=d0",
            "-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
            "-device", "virtio-serial-device",
            "-chardev", f"socket,id=agent,path={workdir}/agent.sock,server=on,wait=off",
            "-device", "virtserialport,chardev=agent,name=org.bungalow.agent",
            "-device", "virtio-rng-device",
        ]  # fmt: skip


def plain_round(guest: PlainGuest, measure_memory: bool) -> Sample:
    with scratch_dir("plain") as workdir:
        disk = workdir / "disk.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(guest.base),
             str(disk), "4G"],
            check=True,
        )  # fmt: skip
        started = time.perf_counter()
        # Not the terminal's stdin: QEMU's stdio serial would take over the terminal.
        process = subprocess.Popen(
            guest.argv(disk, workdir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )
        try:
            wait_ready(process, started + READY_TIMEOUT)
            elapsed = time.perf_counter() - started
            pss = None
            if measure_memory:
                time.sleep(IDLE_SECONDS)
                pss = pss_kib(process.pid)
        finally:
            process.kill()
            process.wait()
    return elapsed, pss


def wait_ready(process: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the agent's readiness line comes out of the guest's serial port."""
    if process.stdout is None:
        raise BenchFailed("plain QEMU's serial port is not connected to the bench")
    out = process.stdout.fileno()
    seen = b""
    while READY not in seen:
        if not select.select([out], [], [], max(0.0, deadline - time.perf_counter()))[0]:
            raise BenchFailed(f"plain QEMU's guest was not ready within {READY_TIMEOUT:.0f} s")
        chunk = os.read(out, 4096)
        if not chunk:
            raise BenchFailed(f"plain QEMU exited ({process.wait()}) before the guest was ready")
        seen = seen[-4096:] + chunk


def compare(
    env: dict[str, str], guest: PlainGuest, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Boot times and idle PSS of each side, rounds interleaved."""
    times: dict[str, list[float]] = {"bungalow": [], "plain": []}
    memory: dict[str, list[int]] = {"bungalow": [], "plain": []}
    # One discarded round each: the daemon's first launch pays once for the
    # accelerator probe and the initramfs, which every later launch reuses.
    bungalow_round(env, "bench-warmup", guest.memory, False)
    plain_round(guest, False)
    for index in range(rounds):
        measure = index < MEMORY_ROUNDS
        b_time, b_pss = bungalow_round(env, f"bench-{index}", guest.memory, measure)
        p_time, p_pss = plain_round(guest, measure)
        times["bungalow"].append(b_time)
        times["plain"].append(p_time)
        line = f"round {index + 1}: bungalow {b_time:.2f}s  plain {p_time:.2f}s"
        if b_pss is not None and p_pss is not None:
            memory["bungalow"].append(b_pss)
            memory["plain"].append(p_pss)
            line += f"  pss {b_pss / 1024:.0f} MiB vs {p_pss / 1024:.0f} MiB"
        print(line, flush=True)
    return times, memory


def print_medians(times: dict[str, list[float]], memory: dict[str, list[int]]) -> None:
    b, p = statistics.median(times["bungalow"]), statistics.median(times["plain"])
    bm, pm = statistics.median(memory["bungalow"]), statistics.median(memory["plain"])
    print(
        f"boot to first exec  bungalow {b:.2f}s  plain QEMU {p:.2f}s"
        f"  ratio {b / p:.2f} (target <= 1.15)"
    )
    print(
        f"idle QEMU PSS       bungalow {bm / 1024:.0f} MiB  plain QEMU {pm / 1024:.0f} MiB"
        f"  ratio {bm / pm:.2f} (target <= 1.10)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive, default=5)
    parser.add_argument("--memory", default="512M")
    args = parse_args(parser, {"rounds": 1})

    with scratch_dir("boot") as home:
        env = bungalow_env(home)
        build_image(env)
        store = ImageStore(images_dir())
        image = store.get("debian-12")
        if image.kernel is None:
            raise BenchFailed("the debian-12 image has no kernel to boot directly")
        guest = PlainGuest(
            image.disk, image.kernel, store.initrd_for(image), args.memory, host_tsc_khz() or 0
        )
        cli(env, "ls")  # the daemon is up before the clock starts, as on a host in use
        times, memory = compare(env, guest, args.rounds)
        print_medians(times, memory)
        boots = [
            line.split("ready: ")[1]
            for line in (home / "bungalowd.log").read_text().splitlines()
            if " ready: " in line
        ]
        print("bungalowd's own view of each boot:", *boots, sep="\n  ")


if __name__ == "__main__":
    run(main)
