"""Boot-to-exec time and idle memory: bungalow against a hand-written QEMU command line.

Both sides boot the same kernel, initramfs and image (through a fresh qcow2
overlay each round) with the same CPU count and memory, rounds interleaved so
that the machine's noise hits both alike. bungalow's time runs from the
`bungalow launch` command to the end of the first successful `bungalow exec`;
plain QEMU's from its process start to the agent's readiness line on the serial
port. Memory is the QEMU process's PSS once the guest has sat idle.

    .venv/bin/python bench/boot.py [--rounds 5] [--memory 512M]

Targets (issue 2): time ratio at most 1.15, memory ratio at most 1.10.
"""

from __future__ import annotations

import argparse
import os
import select
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
READY = b"bungalow-agent: ready"
IDLE_SECONDS = 8.0


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss for {pid}")


def run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([*BUNGALOW, *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bungalow {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def bungalow_round(
    env: dict[str, str], name: str, memory: str, measure_memory: bool
) -> tuple[float, int | None]:
    started = time.perf_counter()
    run(env, "launch", name, "--memory", memory)
    run(env, "exec", name, "--", "true")
    elapsed = time.perf_counter() - started
    pss = None
    if measure_memory:
        import json

        pid = json.loads(run(env, "inspect", name))["pid"]
        time.sleep(IDLE_SECONDS)
        pss = pss_kib(pid)
    run(env, "rm", name)
    return elapsed, pss


def plain_argv(
    kernel: Path, initrd: Path, disk: Path, memory: str, workdir: Path, tsc_khz: int
) -> list[str]:
    """What a person would write by hand for the same guest: no QMP, no daemon.

    The kernel command line is the same as bungalow's, TSC hint included: without
    it microvm guests under TCG hang calibrating the TSC on a busy host.
    """
    cmdline = (
        "console=ttyS0 quiet panic=-1 root=/dev/vda bungalow.hostname=plain "
        f"bungalow.ip=10.0.2.15/24 bungalow.gw=10.0.2.2 tsc_early_khz={tsc_khz}"
    )
    return [
        "qemu-system-x86_64",
        "-M", "microvm,acpi=on", "-accel", "tcg,thread=multi", "-cpu", "max",
        "-smp", "1", "-m", memory,
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", "stdio",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", cmdline,
        "-drive", f"file={disk},if=none,id=d0,format=qcow2,cache=none,aio=native",
        "-device", "virtio-blk-device,drive=d0",
        "-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
        "-device", "virtio-serial-device",
        "-chardev", f"socket,id=agent,path={workdir}/agent.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=org.bungalow.agent",
        "-device", "virtio-rng-device",
    ]  # fmt: skip


def plain_round(
    base: Path, kernel: Path, initrd: Path, memory: str, measure_memory: bool, tsc_khz: int
) -> tuple[float, int | None]:
    workdir = Path(tempfile.mkdtemp(prefix="bgw-plain-", dir="/tmp"))
    disk = workdir / "disk.qcow2"
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            str(base),
            str(disk),
            "4G",
        ],
        check=True,
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        plain_argv(kernel, initrd, disk, memory, workdir, tsc_khz), stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    seen = b""
    try:
        deadline = started + 120
        while READY not in seen:
            if not select.select(
                [process.stdout], [], [], max(0.0, deadline - time.perf_counter())
            )[0]:
                sys.exit("plain QEMU's guest was not ready within 120 s")
            chunk = process.stdout.read1(4096)  # type: ignore[attr-defined]
            if not chunk:
                sys.exit("plain QEMU exited before the guest was ready")
            seen = seen[-4096:] + chunk
        elapsed = time.perf_counter() - started
        pss = None
        if measure_memory:
            time.sleep(IDLE_SECONDS)
            pss = pss_kib(process.pid)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    return elapsed, pss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory", default="512M")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from bungalow.images.store import ImageStore
    from bungalow.paths import DataDir
    from bungalow.qemu.accel import host_tsc_khz

    home = Path(tempfile.mkdtemp(prefix="bgw-bench-", dir="/tmp"))
    # Share the user's image store so that the image is built once, not per run.
    images_dir = os.environ.get("BUNGALOW_IMAGES") or str(DataDir.from_env().images)
    env = {**os.environ, "BUNGALOW_HOME": str(home), "BUNGALOW_IMAGES": images_dir}
    try:
        run(env, "image", "build", "debian-12")
        store = ImageStore(Path(images_dir))
        image = store.get("debian-12")
        initrd = store.initrd_for(image)
        assert image.kernel is not None
        tsc_khz = host_tsc_khz() or 0
        run(env, "ls")  # the daemon is up before the clock starts, as on a host in use
        times: dict[str, list[float]] = {"bungalow": [], "plain": []}
        memory: dict[str, list[int]] = {"bungalow": [], "plain": []}
        # One discarded round each: the daemon's first launch pays once for the
        # accelerator probe and the initramfs, which every later launch reuses.
        bungalow_round(env, "bench-warmup", args.memory, False)
        plain_round(image.disk, image.kernel, initrd, args.memory, False, tsc_khz)
        for index in range(args.rounds):
            measure = index < 3
            b_time, b_pss = bungalow_round(env, f"bench-{index}", args.memory, measure)
            p_time, p_pss = plain_round(
                image.disk, image.kernel, initrd, args.memory, measure, tsc_khz
            )
            times["bungalow"].append(b_time)
            times["plain"].append(p_time)
            if b_pss is not None and p_pss is not None:
                memory["bungalow"].append(b_pss)
                memory["plain"].append(p_pss)
            line = f"round {index + 1}: bungalow {b_time:.2f}s  plain {p_time:.2f}s"
            if b_pss and p_pss:
                line += f"  pss {b_pss / 1024:.0f} MiB vs {p_pss / 1024:.0f} MiB"
            print(line, flush=True)
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
        boots = [
            line.split("ready: ")[1]
            for line in (home / "bungalowd.log").read_text().splitlines()
            if " ready: " in line
        ]
        print("bungalowd's own view of each boot:", *boots, sep="\n  ")
    finally:
        subprocess.run([*BUNGALOW, "ls", "-q"], env=env, capture_output=True)
        pidfile = home / "bungalowd.pid"
        for name in subprocess.run(
            [*BUNGALOW, "ls", "-q"], env=env, capture_output=True, text=True
        ).stdout.split():
            subprocess.run([*BUNGALOW, "rm", name], env=env, capture_output=True)
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
