"""Boot-to-exec time and idle memory: bungalow against a hand-written QEMU command line.

Both sides boot the same kernel, initramfs and image (through a fresh qcow2
overlay each round, made inside the timed span on both) with the same kernel
command line, CPU count and memory, and end at the same point: the first
command (``true``) run through the guest agent has exited. Rounds are
interleaved so that the machine's noise hits both alike.

- bungalow: from starting ``bungalow launch`` to the end of the first
  ``bungalow exec``. bungalowd's log line for each boot (daemon/vms/timeline.py:
  the monotonic instant the request arrived and the seconds of each phase) says
  where the time between went.
- plain QEMU: from ``qemu-img create`` to the exit of ``true``, run through
  bungalow's own host end of the agent protocol (guest/channel.py, the code the
  daemon uses: hello until answered, then exec), with no daemon and no CLI. The
  agent's readiness line on the serial port is timed too.

The phase table gives each side's median seconds for:

- CLI start: from starting ``bungalow launch`` to bungalowd receiving its request
  (interpreter, imports, the image check);
- API: bungalowd planning and admitting the VM and inserting its row;
- spec: the disk overlay and the machine spec (plain: ``qemu-img create``);
- QEMU start: to bungalowd's QMP connection (plain: to the agent's socket appearing);
- guest boot: to the agent answering bungalowd's hello (plain: to the readiness line);
- agent ready: plain only, from the readiness line to the agent answering hello;
- launch returns: bungalowd's steps after the agent answered (clock and identity,
  limits, the record), its answer, and the CLI printing it and exiting;
- first exec: ``bungalow exec -- true`` from start to exit (plain: the exec alone).

Memory is the QEMU process's PSS once the guest has sat idle.

    .venv/bin/python bench/boot.py [--rounds 5] [--memory 512M] [--quick]

Targets (issue 2): time ratio at most 1.15, memory ratio at most 1.10.

A last line per firmware (issue 13, bench/_installed.py): an ISO-installed pc VM
booting from its own disk to its marker line on the console, against plain QEMU
with the same firmware and disk (target: ratio at most 1.15).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from _installed import compare_installed
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

from bungalow.guest.channel import AgentChannel
from bungalow.guest.protocol import READY_LINE
from bungalow.images.store import ImageStore
from bungalow.qemu.accel import host_tsc_khz

READY = READY_LINE.encode()
READY_TIMEOUT = 120.0
IDLE_SECONDS = 8.0
#: The first rounds also let each guest sit idle for the memory figure.
MEMORY_ROUNDS = 3
#: bungalowd's line for one boot (daemon/vms/timeline.py).
BOOTED = re.compile(
    r" INFO \S+: (?P<name>\S+) booted: received=(?P<received>[\d.]+) (?P<phases>.*) \("
)
#: The rows of the phase table, in order (what each covers: the module's docstring).
ROWS = (
    ("cli", "CLI start"),
    ("api", "API"),
    ("spec", "spec"),
    ("qemu", "QEMU start"),
    ("guest", "guest boot"),
    ("agent", "agent ready"),
    ("ready", "launch returns"),
    ("exec", "first exec"),
)


@dataclass(frozen=True)
class Sample:
    """One boot: seconds to the first exec's end, seconds by phase, idle PSS (KiB) if measured."""

    total: float
    phases: Mapping[str, float]
    pss: int | None
    #: Plain QEMU only: from its start to the readiness line, the measure before exec was timed.
    to_ready_line: float | None = None


def bungalow_round(
    env: dict[str, str], home: Path, name: str, memory: str, measure_memory: bool
) -> Sample:
    started = time.monotonic()
    cli(env, "launch", name, "--memory", memory)
    launched = time.monotonic()
    cli(env, "exec", name, "--", "true")
    finished = time.monotonic()
    pss = None
    if measure_memory:
        pid = json.loads(cli(env, "inspect", name))["pid"]
        time.sleep(IDLE_SECONDS)
        pss = pss_kib(pid)
    cli(env, "rm", name)
    received, daemon = daemon_phases(home, name)
    phases = {
        "cli": received - started,
        "api": daemon["api"],
        "spec": daemon["disk"] + daemon["spec"],
        "qemu": daemon["qemu"],
        "guest": daemon["guest"],
        # bungalowd's own "ready" phase, its answer, and the CLI printing it and exiting.
        "ready": launched
        - received
        - sum(daemon[key] for key in ("api", "disk", "spec", "qemu", "guest")),
        "exec": finished - launched,
    }
    return Sample(finished - started, phases, pss)


def daemon_phases(home: Path, name: str) -> tuple[float, dict[str, float]]:
    """When bungalowd got the request to boot ``name`` (monotonic), and its phases' seconds."""
    for line in (home / "bungalowd.log").read_text().splitlines():
        found = BOOTED.search(line)
        if found and found["name"] == name:
            pairs = (pair.split("=") for pair in found["phases"].split())
            return float(found["received"]), {key: float(value) for key, value in pairs}
    raise BenchFailed(f"bungalowd's log has no boot line for {name}; is this bungalow too old?")


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

        The kernel command line is bungalow's (qemu/argv.py, ``kernel_cmdline``), TSC
        hints included: without them microvm guests under TCG hang calibrating the
        TSC on a busy host, or fall back to a slow clocksource.
        """
        cmdline = (
            "console=ttyS0 quiet panic=-1 root=/dev/vda bungalow.hostname=plain "
            "bungalow.ip=10.0.2.15/24 bungalow.gw=10.0.2.2 "
            f"tsc_early_khz={self.tsc_khz} tsc=reliable"
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
        return asyncio.run(_plain_round(guest, workdir, measure_memory))


async def _plain_round(guest: PlainGuest, workdir: Path, measure_memory: bool) -> Sample:
    disk, agent = workdir / "disk.qcow2", workdir / "agent.sock"
    started = time.monotonic()
    made = await asyncio.create_subprocess_exec(
        "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(guest.base),
        str(disk), "4G",
    )  # fmt: skip
    if await made.wait() != 0:
        raise BenchFailed(f"qemu-img could not make an overlay on {guest.base}")
    spawned = time.monotonic()
    # Not the terminal's stdin: QEMU's stdio serial would take over the terminal.
    process = await asyncio.create_subprocess_exec(
        *guest.argv(disk, workdir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            socket_task = asyncio.create_task(_appears(agent))
            ready_task = asyncio.create_task(_ready_line(process))
            channel = await _connect(process, agent)
            answered = time.monotonic()
            try:
                result = await (await channel.exec(["true"])).collect()
            finally:
                await channel.close()
            finished = time.monotonic()
            if result.exit_code != 0:
                raise BenchFailed(f"`true` in plain QEMU's guest exited {result.exit_code}")
            socket_at, ready_at = await socket_task, await ready_task
        pss = None
        if measure_memory:
            await asyncio.sleep(IDLE_SECONDS)
            pss = pss_kib(process.pid)
    except TimeoutError:
        raise BenchFailed(
            f"plain QEMU's guest did not run `true` within {READY_TIMEOUT:.0f} s"
        ) from None
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    phases = {
        "spec": spawned - started,
        "qemu": socket_at - spawned,
        "guest": ready_at - socket_at,
        "agent": answered - ready_at,
        "exec": finished - answered,
    }
    return Sample(finished - started, phases, pss, to_ready_line=ready_at - spawned)


async def _connect(process: asyncio.subprocess.Process, path: Path) -> AgentChannel:
    """The agent's channel, as bungalowd reaches it; BenchFailed if QEMU ends first."""
    connect = asyncio.create_task(AgentChannel.connect(path, timeout=READY_TIMEOUT))
    exited = asyncio.create_task(process.wait())
    await asyncio.wait({connect, exited}, return_when=asyncio.FIRST_COMPLETED)
    if not connect.done():
        connect.cancel()
        raise BenchFailed(f"plain QEMU exited ({process.returncode}) before its agent answered")
    exited.cancel()
    return connect.result()


async def _appears(path: Path) -> float:
    """When QEMU has made the agent's socket: it has set its devices up and boots."""
    while not path.exists():
        await asyncio.sleep(0.002)
    return time.monotonic()


async def _ready_line(process: asyncio.subprocess.Process) -> float:
    """When the agent's readiness line came out of the guest's serial port."""
    if process.stdout is None:
        raise BenchFailed("plain QEMU's serial port is not connected to the bench")
    seen = b""
    while READY not in seen:
        chunk = await process.stdout.read(4096)
        if not chunk:
            raise BenchFailed("plain QEMU's serial port closed before the agent was ready")
        seen = seen[-4096:] + chunk
    return time.monotonic()


def compare(
    env: dict[str, str], home: Path, guest: PlainGuest, rounds: int
) -> dict[str, list[Sample]]:
    """Each side's samples, rounds interleaved."""
    samples: dict[str, list[Sample]] = {"bungalow": [], "plain": []}
    # One discarded round each: the daemon's first launch pays once for the
    # accelerator probe and the initramfs, which every later launch reuses.
    bungalow_round(env, home, "bench-warmup", guest.memory, False)
    plain_round(guest, False)
    for index in range(rounds):
        measure = index < MEMORY_ROUNDS
        ours = bungalow_round(env, home, f"bench-{index}", guest.memory, measure)
        plain = plain_round(guest, measure)
        samples["bungalow"].append(ours)
        samples["plain"].append(plain)
        line = (
            f"round {index + 1}: bungalow {ours.total:.2f}s (QEMU and guest {_booting(ours):.2f}s)"
            f"  plain {plain.total:.2f}s ({_booting(plain):.2f}s)"
        )
        if ours.pss is not None and plain.pss is not None:
            line += f"  pss {ours.pss / 1024:.0f} MiB vs {plain.pss / 1024:.0f} MiB"
        print(line, flush=True)
    return samples


def _booting(sample: Sample) -> float:
    """Seconds from starting QEMU to the agent's answer: the part neither side's code runs."""
    return sum(sample.phases.get(key, 0.0) for key in ("qemu", "guest", "agent"))


def print_phases(samples: dict[str, list[Sample]]) -> None:
    """The median of each phase on each side; a phase a side does not have shows as -."""
    ours, plain = samples["bungalow"], samples["plain"]
    print(f"\nwhere the time goes: median seconds over {len(ours)} rounds (medians do not add up)")
    print(f"  {'phase':<16} {'bungalow':>9} {'plain':>9} {'extra':>7}")
    for key, label in ROWS:
        b, p = _median_of(ours, key), _median_of(plain, key)
        extra = f"{(b or 0.0) - (p or 0.0):+7.2f}"
        print(f"  {label:<16} {_shown(b):>9} {_shown(p):>9} {extra}")


def _median_of(samples: list[Sample], key: str) -> float | None:
    values = [sample.phases[key] for sample in samples if key in sample.phases]
    return statistics.median(values) if values else None


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_medians(samples: dict[str, list[Sample]]) -> None:
    ours, plain = samples["bungalow"], samples["plain"]
    b = statistics.median(sample.total for sample in ours)
    p = statistics.median(sample.total for sample in plain)
    print(
        f"boot to first exec  bungalow {b:.2f}s  plain QEMU {p:.2f}s"
        f"  ratio {b / p:.2f} (target <= 1.15)"
    )
    ratios = sorted(o.total / q.total for o, q in zip(ours, plain, strict=True))
    print(f"  round by round ratios, sorted: {' '.join(f'{r:.2f}' for r in ratios)}")
    old = statistics.median(sample.to_ready_line or 0.0 for sample in plain)
    print(
        f"  the former measure, plain QEMU from its start to the readiness line: {old:.2f}s,"
        f" ratio {b / old:.2f}"
    )
    bm = statistics.median(sample.pss for sample in ours if sample.pss is not None)
    pm = statistics.median(sample.pss for sample in plain if sample.pss is not None)
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
        samples = compare(env, home, guest, args.rounds)
        print_phases(samples)
        print_medians(samples)
        compare_installed(env, home, args.memory, args.rounds)


if __name__ == "__main__":
    run(main)
