"""Per-VM memory overhead, fought: idle cold VMs with the memory features off and on, and libvirt.

One run boots, on bungalow, ``--server`` cold ``debian-12-server`` VMs and ``--micro``
cold ``debian-12`` VMs (``--memory`` each, two booting at a time), lets them idle
``--idle`` seconds, and measures them; twice, in two data directories:

- features off: ``[memory] ksm = "off"`` and ``balloon = false`` (no virtio-balloon, so
  no free page reporting);
- features on: the defaults, ``ksm = "auto"`` and ``balloon = true``: bungalowd turns KSM
  on, the guests report the pages they free, and the bench waits until KSM has settled
  (two full scans since it came on, and the pages it merged of the bench's VMs moved by
  less than 2% over ``SETTLE_POLL`` s; at most ``--ksm-wait`` s).

Measured for each side: the summed PSS of the VMs' QEMUs (``/proc/PID/smaps_rollup``;
PSS divides a page KSM merged among every process mapping it), and how much the
host's ``MemAvailable`` dropped from before the first boot to the end of the idle
time (the whole host's: other users' work moves it too); for the features-on side,
ksmd's CPU time from ``/proc``, as a share of one CPU, from the first boot until KSM
settled (ksmd idles before: KSM is off) and for ``STEADY_SECONDS`` after, the VMs idle.

Then ``--server`` VMs of the same image under libvirt with its defaults (Debian 12's
libvirtd started by the bench, bench/_libvirt.py; QEMU's default TCG translation cache
and balloon device, KSM as the host has it: off), their summed PSS against that of
bungalow's server VMs (not its micro ones) with the features on and off, scaled to as
many VMs. ``--no-libvirt`` skips that part.

KSM must be off when the bench starts (on, it is someone else's and the off side
cannot be measured), and is off again at its end: bungalowd turns off what it
turned on once its last VM is gone.

    .venv/bin/python bench/overhead.py [--server 10] [--micro 10] [--memory 512M]
                                       [--idle 60] [--ksm-wait 300] [--no-libvirt] [--quick]

Targets (issue 15): summed PSS with the features on against off at most 0.6; KSM's
CPU while it merges and the PSS against libvirt printed.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from _libvirt import DomainSpec, LibvirtHost, check_readable, ensure_installed, qemu_identity
from _sides import LibvirtSide
from _support import (
    BenchFailed,
    build_image,
    bungalow_env,
    cli,
    images_dir,
    parse_args,
    pss_kib,
    run,
    scratch_dir,
)
from peers import libvirt_cmdline

from bungalow.host import ksm
from bungalow.host.ksm_owner import KsmOwnership
from bungalow.images.store import ImageStore
from bungalow.qemu.accel import host_tsc_khz
from bungalow.units import parse_size

SERVER_IMAGE, MICRO_IMAGE = "debian-12-server", "debian-12"
#: config.toml of each side.
#: Twenty 1-vCPU VMs on a 2-CPU host is more than the default 4 vCPUs per CPU.
_COMMON = "[sandboxes]\npool = 0\n\n[allocation]\ncpu = 16.0\n\n"
FEATURES = {
    "off": _COMMON + '[memory]\nksm = "off"\nballoon = false\n',
    "on": _COMMON + '[memory]\nksm = "auto"\nballoon = true\n',
}
#: Seconds between two looks at KSM's counters while waiting for it to settle.
SETTLE_POLL = 10.0
#: Seconds ksmd's CPU is measured once KSM has settled, the VMs idle.
STEADY_SECONDS = 30.0
#: KSM has settled when the pages it shares moved by less than this between two looks.
SETTLED_CHANGE = 0.02
PREFIX = "ovh-"
LIBVIRT_NETWORK, LIBVIRT_BRIDGE = "ovh-lv", "ovhlv0"
LIBVIRT_SUBNET = ipaddress.IPv4Network("10.205.1.0/24")


@dataclass(frozen=True)
class SideResult:
    """One side's figures: summed QEMU PSS and the host's MemAvailable drop (KiB); for the
    features-on side, ksmd's CPU seconds and the wall seconds from the first boot until
    KSM settled, what KSM saved host-wide (KiB), and ksmd's share of a CPU afterwards."""

    label: str
    vms: int
    pss_kib: int
    available_drop_kib: int
    server_vms: int = 0  # of which server VMs, and their summed PSS (KiB)
    server_pss_kib: int = 0
    ksmd_cpu_s: float | None = None
    merge_s: float | None = None
    ksm_saved_kib: int | None = None
    ksmd_steady: float | None = None  # share of one CPU, once merged


# -- pure helpers (tests/bench/test_overhead_bench.py) ------------------------------------------


def mem_available_kib(meminfo: str) -> int:
    """``MemAvailable`` in KiB from /proc/meminfo's text."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise BenchFailed("/proc/meminfo has no MemAvailable line")


def settled(first_scans: int, scans: int, previous: int, now: int) -> bool:
    """Whether KSM is done merging the bench's VMs: two full scans since ``first_scans``
    (``scans`` now), and the VMs' merged pages (``ksm_merging_pages`` summed) moved by
    less than :data:`SETTLED_CHANGE` from ``previous`` to ``now``."""
    if scans < first_scans + 2:
        return False
    return now > 0 and abs(now - previous) <= SETTLED_CHANGE * now


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs > 0 else "n/a"


def scaled_to(count: int, vms: int, pss_kib: int) -> int:
    """``pss_kib`` summed over ``vms`` VMs, scaled to ``count`` VMs (KiB; 0 without VMs)."""
    return pss_kib * count // vms if vms > 0 else 0


# -- bungalow's sides ------------------------------------------------------------------------------


def _available() -> int:
    return mem_available_kib(Path("/proc/meminfo").read_text())


def _names(args: argparse.Namespace) -> list[tuple[str, str]]:
    servers = [(f"srv{index}", SERVER_IMAGE) for index in range(args.server)]
    micros = [(f"mic{index}", MICRO_IMAGE) for index in range(args.micro)]
    return servers + micros


def boot_all(env: Mapping[str, str], args: argparse.Namespace) -> None:
    """Launch every VM, two at a time, waiting for the servers' systemd between pairs."""
    names = _names(args)
    for start in range(0, len(names), 2):
        pair = names[start : start + 2]
        for name, image in pair:
            cli(env, "launch", name, "--image", image, "--memory", args.memory, timeout=900)
        for name, image in pair:
            if image == SERVER_IMAGE:
                cli(env, "wait", name, "--timeout", "15m", timeout=1000)
        print(f"  booted {', '.join(name for name, _ in pair)}", flush=True)


def summed_pss(env: Mapping[str, str]) -> dict[str, list[int]]:
    """Each image's running VMs' QEMU PSS (KiB) in the data directory; prints the median
    VM's PSS by image."""
    vms = [vm for vm in json.loads(cli(env, "ls", "--json")) if vm.get("pid")]
    by_image: dict[str, list[int]] = {}
    for vm in vms:
        by_image.setdefault(vm["image"], []).append(pss_kib(vm["pid"]))
    for image, mine in sorted(by_image.items()):
        print(f"  {image}: median QEMU PSS {statistics.median(mine) / 1024:.0f} MiB, summed "
              f"{sum(mine) / 1024:.0f} MiB over {len(mine)} VMs", flush=True)  # fmt: skip
    return by_image


def merging_pages(env: Mapping[str, str]) -> int:
    """The pages KSM merged of the data directory's VMs, summed (/proc/PID/ksm_stat)."""
    pids = [vm["pid"] for vm in json.loads(cli(env, "ls", "--json")) if vm.get("pid")]
    stats = [ksm.process_stat(pid) for pid in pids]
    return sum(stat.merging_pages for stat in stats if stat is not None)


def wait_settled(env: Mapping[str, str], wait: float) -> None:
    """Wait for KSM to come on and settle on the VMs of ``env`` (at most ``wait`` s)."""
    knobs = ksm.Ksm()
    deadline = time.monotonic() + wait
    while knobs.number("run") != 1:
        if time.monotonic() > deadline:
            raise BenchFailed("bungalowd did not turn KSM on with ksm = auto and many VMs")
        time.sleep(1.0)
    first, previous = knobs.number("full_scans"), merging_pages(env)
    while time.monotonic() < deadline:
        time.sleep(SETTLE_POLL)
        now = merging_pages(env)
        if settled(first, knobs.number("full_scans"), previous, now):
            return
        previous = now
    print(f"  KSM had not settled after {wait:.0f} s; measuring as it is", flush=True)


def ksmd_seconds() -> float:
    return (ksm.ksmd_cpu_ns() or 0) / 1e9


def wait_ksm_off(seconds: float = 30.0) -> None:
    """Wait until bungalowd, its last VM gone, has turned off the KSM it turned on."""
    deadline = time.monotonic() + seconds
    while ksm.Ksm().number("run") != 0:
        if time.monotonic() > deadline:
            raise BenchFailed(f"bungalowd left KSM on {seconds:.0f} s after its last VM went")
        time.sleep(0.5)


def bungalow_side(label: str, args: argparse.Namespace) -> SideResult:
    """Boot the VMs with the features ``label`` (off or on), idle, measure, remove them."""
    print(f"features {label}:", flush=True)
    with scratch_dir(f"overhead-{label}", FEATURES[label]) as home:
        env = bungalow_env(home)
        before, began, cpu = _available(), time.monotonic(), ksmd_seconds()  # ksmd idles
        boot_all(env, args)
        time.sleep(args.idle)
        merged, saved, steady = None, None, None
        if label == "on":
            wait_settled(env, args.ksm_wait)
            merged = (ksmd_seconds() - cpu, time.monotonic() - began)
        by_image = summed_pss(env)
        vms, pss = sum(map(len, by_image.values())), sum(map(sum, by_image.values()))
        servers = by_image.get(SERVER_IMAGE, [])
        drop = before - _available()
        if merged is not None:  # what ksmd costs once it has merged, the VMs idle
            steady_cpu, steady_began = ksmd_seconds(), time.monotonic()
            time.sleep(STEADY_SECONDS)
            steady = (ksmd_seconds() - steady_cpu) / (time.monotonic() - steady_began)
            saved = ksm.Ksm().totals().saved_bytes // 1024
        names = [vm["name"] for vm in json.loads(cli(env, "ls", "--json"))]
        cli(env, "rm", "--force", *names)
        if label == "on":
            wait_ksm_off()
    print(f"  {vms} VMs: summed QEMU PSS {pss / 1024:.0f} MiB, MemAvailable down "
          f"{drop / 1024:.0f} MiB", flush=True)  # fmt: skip
    return SideResult(label, vms, pss, drop, len(servers), sum(servers),
                      *(merged or (None, None)), saved, steady)  # fmt: skip


# -- libvirt ---------------------------------------------------------------------------------------


def libvirt_side(args: argparse.Namespace) -> SideResult:
    """``--server`` VMs of the server image under libvirt's defaults; their summed PSS."""
    ensure_installed()
    store = ImageStore(images_dir())
    image = store.get(SERVER_IMAGE)
    if image.kernel is None:
        raise BenchFailed(f"the {SERVER_IMAGE} image has no kernel to boot directly")
    with scratch_dir("overhead-libvirt") as workdir:
        user = qemu_identity()
        initrd = store.initrd_for(image)
        check_readable([image.disk, image.kernel, initrd], user)
        workdir.chmod(0o755)
        template = DomainSpec(
            name="", memory_mib=parse_size(args.memory) >> 20, cpus=1, kernel=image.kernel,
            initrd=initrd, cmdline=libvirt_cmdline(host_tsc_khz() or 0), disk=image.disk,
            network=LIBVIRT_NETWORK, console_log=Path(), user=user, tb_cache_mib=None,
            defaults=True,
        )  # fmt: skip
        before = _available()
        with LibvirtHost(workdir, PREFIX, LIBVIRT_BRIDGE[:6]):
            side = LibvirtSide(workdir, LIBVIRT_NETWORK, template)
            side.create_network(LIBVIRT_BRIDGE, LIBVIRT_SUBNET)
            names = [f"{PREFIX}{index}" for index in range(args.server)]
            for start in range(0, len(names), 2):
                for name in names[start : start + 2]:
                    side.boot(name)
                for name in names[start : start + 2]:
                    side.wait_running(name)
            time.sleep(args.idle)
            each = [pss_kib(side.qemu_pid(name)) for name in names]
            pss, drop = sum(each), before - _available()
            print(f"libvirt: {len(names)} VMs, median QEMU PSS {statistics.median(each) / 1024:.0f}"
                  f" MiB, summed {pss / 1024:.0f} MiB", flush=True)  # fmt: skip
            for name in names:
                side.remove(name)
    return SideResult("libvirt", len(names), pss, drop, len(names), pss)


# -- the run ---------------------------------------------------------------------------------------


def print_results(off: SideResult, on: SideResult, libvirt: SideResult | None) -> None:
    mib = 1024
    print(f"\nidle cold VMs, features off and on, in one run ({on.vms} VMs each side; "
          "features = KSM and the balloon's free page reporting)")  # fmt: skip
    print(f"  summed QEMU PSS      off {off.pss_kib / mib:7.0f} MiB   on {on.pss_kib / mib:7.0f} "
          f"MiB   ratio {ratio(on.pss_kib, off.pss_kib)} (target <= 0.60)")  # fmt: skip
    print(f"  MemAvailable drop    off {off.available_drop_kib / mib:7.0f} MiB   on "
          f"{on.available_drop_kib / mib:7.0f} MiB   ratio "
          f"{ratio(on.available_drop_kib, off.available_drop_kib)} (the whole host's)")  # fmt: skip
    if on.ksmd_cpu_s is not None and on.merge_s:
        print(f"  KSM while it merged  ksmd {on.ksmd_cpu_s:.1f} s of CPU in the {on.merge_s:.0f} s "
              f"from the first boot until it settled ({100 * on.ksmd_cpu_s / on.merge_s:.1f}% "
              f"of one CPU); then {100 * (on.ksmd_steady or 0):.1f}% of one CPU, the VMs idle; "
              f"saved {(on.ksm_saved_kib or 0) / mib:.0f} MiB host-wide")  # fmt: skip
    if libvirt is not None:
        # bungalow's server VMs alone (micro VMs are smaller), scaled to libvirt's count
        ours = scaled_to(libvirt.vms, on.server_vms, on.server_pss_kib)
        theirs = libvirt.pss_kib
        print(f"  against libvirt      {libvirt.vms} server VMs under libvirt's defaults: "
              f"{theirs / mib:.0f} MiB summed PSS; bungalow's {on.server_vms} server VMs "
              f"with the features on {ours / mib:.0f} MiB for as many "
              f"(ratio {ratio(ours, theirs)})")  # fmt: skip
        plain = scaled_to(libvirt.vms, off.server_vms, off.server_pss_kib)  # KSM off, as libvirt
        print(f"                       with the features off {plain / mib:.0f} MiB "
              f"(ratio {ratio(plain, theirs)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", type=int, default=10, help="server VMs per side")
    parser.add_argument("--micro", type=int, default=10, help="micro VMs per side")
    parser.add_argument("--memory", default="512M")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds the VMs idle")
    parser.add_argument("--ksm-wait", type=float, default=300.0,
                        help="seconds at most for KSM to settle")  # fmt: skip
    parser.add_argument("--no-libvirt", dest="libvirt", action="store_false")
    args = parse_args(parser, {"server": 1, "micro": 1, "idle": 5.0, "ksm_wait": 120.0})
    with contextlib.suppress(OSError):  # a stale claim of bungalow's: KSM goes back off
        KsmOwnership("bench-overhead", ksm.Ksm()).settle([], None)
    if ksm.Ksm().settings().run != 0:
        raise BenchFailed("KSM is on already (someone else's); turn it off to measure both sides")
    with scratch_dir("overhead-build") as home:
        env = bungalow_env(home)
        build_image(env, MICRO_IMAGE)
        build_image(env, SERVER_IMAGE)
    off = bungalow_side("off", args)
    on = bungalow_side("on", args)
    libvirt = libvirt_side(args) if args.libvirt else None
    print_results(off, on, libvirt)


if __name__ == "__main__":
    run(main)
