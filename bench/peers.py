"""bungalow against libvirt on one host: boot to first command, idle memory, VM-to-VM network.

Both sides boot the same server image (``debian-12-server``: systemd, and both
agents, each started by udev when its port exists) with the same kernel, the
same initramfs (bungalow's: it mounts the root and hands over to systemd), the
same kernel command line (bungalow's, with its TSC hints for TCG), one vCPU and
the same memory, each VM on a fresh qcow2 overlay of the image's disk, and each
on a kernel bridge with a dnsmasq giving DHCP:

- bungalow: ``bungalow network create`` (a bridge, its dnsmasq, bungalow's nft
  table), and ``bungalow launch --image debian-12-server --network``; QEMU's
  ``microvm`` machine.
- libvirt (Debian 12's libvirtd, started by the bench, see bench/_libvirt.py): a
  ``<network>`` with a bridge and dnsmasq of its own and no firewall rules
  (``forward mode='open'``), and a transient ``<domain type='qemu'>`` made by
  ``qemu-img create`` and ``virsh create``: the fastest way libvirt has from an
  image to a running VM (``virt-install --import`` does the same with a Python
  start-up in front). Machine ``q35``: libvirt 9.0 cannot build a ``microvm``
  ("No PCI buses available"). No USB controller, no balloon, and TCG's
  translation cache bounded as bungalow bounds its own (64 MiB; QEMU's default
  1 GiB, mostly touched by a systemd boot, took libvirt's idle PSS from 375 MiB
  to 1.2 GiB in a trial).

Measures, medians over the rounds, rounds interleaved so that the host's noise
hits both sides alike:

- boot to first command: from starting the command (``bungalow launch``;
  ``qemu-img create``) to the exit of ``true`` run in the guest through the
  side's agent (``bungalow exec -- true``; qemu-guest-agent's ``guest-exec``,
  polled through ``virsh qemu-agent-command`` until the agent answers).
- boot to running: until systemd says ``running`` or ``degraded``, waited for
  each side's own way: bungalowd's wait (``launch --wait services``: it asks its
  agent once a second); ``systemctl is-system-running`` through qemu-guest-agent
  once a second.
- idle memory: the PSS of the VM's QEMU process once the guest has run and sat
  idle (the daemons, shared by all VMs, are printed apart).
- VM-to-VM TCP throughput and round trip, between two VMs of a side on its own
  network: iperf3 (the host's binary and its libraries, copied into the guests
  through the side's own agent, so no guest needs the internet) and ping.

The server image against the micro ``debian-12`` on bungalow alone (to the
agent, to ``running``) is bench/server_boot.py's.

    .venv/bin/python bench/peers.py [--rounds 3] [--memory 512M] [--iperf-seconds 10]
                                    [--pings 20] [--quick]

Targets (issue 12): time ratio at most 1.0, memory ratio at most 1.05, throughput
ratio at least 0.95; round trip printed.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import re
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _libvirt import DomainSpec, LibvirtHost, check_readable, ensure_installed, qemu_identity
from _sides import RUNNING_TIMEOUT, BungalowSide, LibvirtSide, Side
from _support import (
    DAEMON_MODULE,
    BenchFailed,
    build_image,
    bungalow_env,
    cli,
    images_dir,
    parse_args,
    positive,
    processes_naming,
    pss_kib,
    run,
    scratch_dir,
)

from bungalow.images.store import ImageStore
from bungalow.qemu.accel import TCG_TB_SIZE_MIB, host_tsc_khz

SERVER_IMAGE = "debian-12-server"
#: The bench's own names and addresses (10.204.0.0/16, ``peer*``), apart from other users'.
PREFIX = "peer-"
LIBVIRT_NETWORK, LIBVIRT_BRIDGE = "peer-lv", "peerlv0"
LIBVIRT_SUBNET = ipaddress.IPv4Network("10.204.1.0/24")
BUNGALOW_NETWORK = "peerbg"
BUNGALOW_SUBNET = ipaddress.IPv4Network("10.204.2.0/24")
IDLE_SECONDS = 8.0
#: Where the guests get iperf3 and the libraries it needs beyond glibc.
GUEST_TOOLS = "/opt/peers"
_RTT = re.compile(r"= [\d.]+/(?P<avg>[\d.]+)/[\d.]+/[\d.]+ ms")
_INET = re.compile(r"\binet (?P<address>[\d.]+)/\d+")
#: What ldd lists that every guest of the same Debian release has already.
_LIBC = ("linux-vdso", "libc.so", "libm.so", "ld-linux")


@dataclass(frozen=True)
class BootSample:
    """One boot: seconds to the agent's first answer, to the first command's end and to
    systemd's ``running``; idle PSS (KiB)."""

    to_agent: float
    to_command: float
    to_running: float | None
    pss: int | None


# -- pure helpers (tests/bench/test_peers.py) ----------------------------------------------------


def parse_iperf(text: str) -> float:
    """Bits per second the receiver saw, from ``iperf3 -J``'s report; BenchFailed on its error."""
    try:
        report = json.loads(text)
    except json.JSONDecodeError:
        raise BenchFailed(f"iperf3's report is not JSON: {text[:200]!r}") from None
    if "error" in report:
        raise BenchFailed(f"iperf3 failed: {report['error']}")
    return float(report["end"]["sum_received"]["bits_per_second"])


def parse_rtt(text: str) -> float:
    """The average round trip in ms from ping's summary (``rtt min/avg/max/mdev = ...``)."""
    found = _RTT.search(text)
    if found is None:
        raise BenchFailed(f"ping printed no round-trip summary: {text.strip()[-200:]!r}")
    return float(found["avg"])


def parse_address(text: str, subnet: ipaddress.IPv4Network) -> str | None:
    """The first address of ``ip -4 -o addr`` output inside ``subnet``, if there is one yet."""
    for found in _INET.finditer(text):
        if ipaddress.IPv4Address(found["address"]) in subnet:
            return found["address"]
    return None


def parse_ldd(text: str) -> list[Path]:
    """The libraries ``ldd`` resolved, less glibc's own (the guest has the same glibc)."""
    libraries = []
    for line in text.splitlines():
        name, _, rest = line.strip().partition(" => ")
        if not rest or name.startswith(_LIBC):
            continue
        path = rest.split(" (", 1)[0].strip()
        if path.startswith("/"):
            libraries.append(Path(path))
    return libraries


def libvirt_cmdline(tsc_khz: int) -> str:
    """bungalow's kernel command line for a server image (qemu/argv.py, daemon/vms/boot.py).

    ``{name}`` is filled in per VM. The TSC words are the hint bungalow gives TCG
    guests; the same words on both sides make the same guest boot.
    """
    words = [
        "console=ttyS0", "quiet", "panic=-1", "root=/dev/vda", "bungalow.hostname={name}",
        "bungalow.init=systemd", "net.ifnames=0",
    ]  # fmt: skip
    if tsc_khz:
        words += [f"tsc_early_khz={tsc_khz}", "tsc=reliable"]
    return " ".join(words)


def median_ratio(ours: list[float], theirs: list[float]) -> tuple[float, float, str]:
    """Both medians and ``ours / theirs`` formatted (n/a when theirs is 0)."""
    b, lv = statistics.median(ours), statistics.median(theirs)
    return b, lv, f"{b / lv:.2f}" if lv > 0 else "n/a"


# -- measures ------------------------------------------------------------------------------------


def boot_round(side: Side, name: str, systemd: bool) -> BootSample:
    """Boot ``name``, wait for systemd (if it has it), sit idle, take the PSS, remove it."""
    started = time.monotonic()
    booted = side.boot(name)
    to_running = None
    if systemd:
        side.wait_running(name)
        to_running = time.monotonic() - started
    time.sleep(IDLE_SECONDS)
    pss = pss_kib(side.qemu_pid(name))
    side.remove(name)
    return BootSample(booted.to_agent, booted.to_command, to_running, pss)


@dataclass(frozen=True)
class Pair:
    """Two VMs of one side on its network: the iperf3 server's name and address, the client."""

    server: str
    address: str
    client: str


def make_pair(side: Side, subnet: ipaddress.IPv4Network, tools: dict[Path, bytes]) -> Pair:
    """Boot two VMs, wait for systemd and their addresses, give both iperf3, start its server."""
    server, client = f"{PREFIX}{side.label[:2]}-a", f"{PREFIX}{side.label[:2]}-b"
    for name in (server, client):
        side.boot(name)
    addresses = {}
    for name in (server, client):
        side.wait_running(name)
        addresses[name] = wait_address(side, name, subnet)
        side.run(name, ["mkdir", "-p", GUEST_TOOLS])
        for path, data in tools.items():
            # A library the guest has at the same path (the same Debian release) stays.
            if path.name == "iperf3" or side.run(name, ["test", "-e", str(path)]).exit_code:
                side.put(name, f"{GUEST_TOOLS}/{path.name}", data)
    started = side.run(server, [*iperf3(), "-s", "-D"])
    if started.exit_code != 0:
        raise BenchFailed(f"iperf3's server in {side.label}'s {server} failed: {started.stderr}")
    return Pair(server, addresses[server], client)


def wait_address(side: Side, name: str, subnet: ipaddress.IPv4Network) -> str:
    deadline = time.monotonic() + RUNNING_TIMEOUT
    while True:
        ran = side.run(name, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        if address := parse_address(ran.stdout, subnet):
            return address
        if time.monotonic() > deadline:
            raise BenchFailed(f"{side.label}'s {name} got no address in {subnet}")
        time.sleep(1.0)


def iperf3() -> list[str]:
    return ["env", f"LD_LIBRARY_PATH={GUEST_TOOLS}", f"{GUEST_TOOLS}/iperf3"]


def host_tools() -> dict[Path, bytes]:
    """The host's iperf3 and the libraries it links beyond glibc, by their host path."""
    binary = Path("/usr/bin/iperf3")
    if not binary.exists():
        raise BenchFailed("the host has no /usr/bin/iperf3; install Debian's iperf3")
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    files = {binary: binary.read_bytes()}
    for library in parse_ldd(ldd.stdout):
        files[library] = library.read_bytes()
    return files


def throughput(side: Side, pair: Pair, seconds: int) -> float:
    ran = side.run(pair.client, [*iperf3(), "-c", pair.address, "-t", str(seconds), "-J"],
                   timeout=seconds + 60)  # fmt: skip
    return parse_iperf(ran.stdout)


def round_trip(side: Side, pair: Pair, count: int) -> float:
    ran = side.run(pair.client, ["ping", "-q", "-c", str(count), "-i", "0.2", pair.address],
                   timeout=count + 60)  # fmt: skip
    return parse_rtt(ran.stdout)


# -- the run ---------------------------------------------------------------------------------------


def network_rounds(sides: list[tuple[Side, ipaddress.IPv4Network]], args: argparse.Namespace
                   ) -> dict[str, tuple[list[float], list[float]]]:  # fmt: skip
    """Per side, throughput (bit/s) and round trips (ms) of each round; the pairs are removed."""
    tools = host_tools()
    pairs = [(side, make_pair(side, subnet, tools)) for side, subnet in sides]
    results: dict[str, tuple[list[float], list[float]]] = {s.label: ([], []) for s, _ in sides}
    for index in range(args.rounds):
        line = f"network round {index + 1}:"
        for side, pair in pairs:
            bits = throughput(side, pair, args.iperf_seconds)
            rtt = round_trip(side, pair, args.pings)
            results[side.label][0].append(bits)
            results[side.label][1].append(rtt)
            line += f"  {side.label} {bits / 1e6:.0f} Mbit/s {rtt:.2f} ms"
        print(line, flush=True)
    for side, pair in pairs:
        side.remove(pair.server)
        side.remove(pair.client)
    return results


def boot_rounds(ours: Side, theirs: Side, rounds: int) -> dict[str, list[BootSample]]:
    samples: dict[str, list[BootSample]] = {"bungalow": [], "libvirt": []}
    for index in range(rounds):
        b = boot_round(ours, f"{PREFIX}bg-{index}", systemd=True)
        lv = boot_round(theirs, f"{PREFIX}lv-{index}", systemd=True)
        samples["bungalow"].append(b)
        samples["libvirt"].append(lv)
        print(
            f"boot round {index + 1}: bungalow {b.to_command:.2f}s (running {b.to_running:.1f}s,"
            f" {(b.pss or 0) / 1024:.0f} MiB)  libvirt {lv.to_command:.2f}s (running"
            f" {lv.to_running:.1f}s, {(lv.pss or 0) / 1024:.0f} MiB)",
            flush=True,
        )
    return samples


def print_results(samples: dict[str, list[BootSample]],
                  network: dict[str, tuple[list[float], list[float]]],
                  daemons: dict[str, int]) -> None:  # fmt: skip
    ours, theirs = samples["bungalow"], samples["libvirt"]
    n = len(ours)
    print(f"\nbungalow against libvirt, medians over {n} rounds (ratio = bungalow / libvirt)")
    b, lv, r = median_ratio([s.to_command for s in ours], [s.to_command for s in theirs])
    print(f"  boot to first command  bungalow {b:6.2f} s     libvirt {lv:6.2f} s     "
          f"ratio {r} (target <= 1.00)")  # fmt: skip
    b, lv, r = median_ratio([s.to_agent for s in ours], [s.to_agent for s in theirs])
    print(f"    of which to the agent's first answer: bungalow {b:.2f} s (launch returned),"
          f" libvirt {lv:.2f} s (guest-exec taken), ratio {r}")  # fmt: skip
    b, lv, r = median_ratio([s.to_running or 0 for s in ours], [s.to_running or 0 for s in theirs])
    print(f"  boot to systemd running bungalow {b:5.1f} s     libvirt {lv:6.1f} s     ratio {r}")
    b, lv, r = median_ratio([s.pss or 0 for s in ours], [s.pss or 0 for s in theirs])
    print(f"  idle QEMU PSS          bungalow {b / 1024:6.0f} MiB   libvirt {lv / 1024:6.0f} MiB"
          f"   ratio {r} (target <= 1.05)")  # fmt: skip
    b, lv, r = median_ratio(network["bungalow"][0], network["libvirt"][0])
    print(f"  VM-to-VM TCP (iperf3)  bungalow {b / 1e6:6.0f} Mbit/s libvirt {lv / 1e6:6.0f} "
          f"Mbit/s ratio {r} (target >= 0.95)")  # fmt: skip
    b, lv, r = median_ratio(network["bungalow"][1], network["libvirt"][1])
    print(f"  VM-to-VM ping          bungalow {b:6.2f} ms    libvirt {lv:6.2f} ms    ratio {r}")
    shown = "  ".join(f"{name} {kib / 1024:.0f} MiB" for name, kib in daemons.items())
    print(f"  shared daemons' PSS (not in the above): {shown}")


def daemons_pss(home: Path, libvirt_dir: Path) -> dict[str, int]:
    """PSS (KiB) of bungalowd, and of libvirtd with virtlogd."""
    ours = [pid for pid, args in processes_naming(home).items() if DAEMON_MODULE in args]
    theirs = list(processes_naming(libvirt_dir))
    return {
        "bungalowd": sum(pss_kib(pid) for pid in ours),
        "libvirtd+virtlogd": sum(pss_kib(pid) for pid in theirs),
    }


@contextlib.contextmanager
def bungalow_network(env: dict[str, str], name: str, subnet: ipaddress.IPv4Network
                     ) -> Iterator[None]:  # fmt: skip
    """bungalow's network for the block; its VMs and it are removed after, come what may.

    bungalowd keeps its bridges and dnsmasq when it stops (a restart adopts them),
    so the scratch directory's clearing would not remove them: this does, first.
    """
    cli(env, "network", "create", name, "--subnet", str(subnet))
    try:
        yield
    finally:
        names = json.loads(cli(env, "ls", "--json"))
        if names:
            cli(env, "rm", "--force", *(vm["name"] for vm in names))
        cli(env, "network", "rm", name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive, default=3)
    parser.add_argument("--memory", default="512M")
    parser.add_argument("--iperf-seconds", type=positive, default=10)
    parser.add_argument("--pings", type=positive, default=20)
    args = parse_args(parser, {"rounds": 1, "iperf_seconds": 2, "pings": 5})
    ensure_installed()

    with scratch_dir("peers") as home, scratch_dir("libvirt") as libvirt_dir:
        env = bungalow_env(home)
        build_image(env, SERVER_IMAGE)
        store = ImageStore(images_dir())
        image = store.get(SERVER_IMAGE)
        if image.kernel is None:
            raise BenchFailed(f"the {SERVER_IMAGE} image has no kernel to boot directly")
        initrd = store.initrd_for(image)
        user = qemu_identity()
        check_readable([image.disk, image.kernel, initrd], user)
        libvirt_dir.chmod(0o755)  # QEMU, as libvirt-qemu, opens the overlays in it
        memory_mib = int(args.memory.rstrip("M")) if args.memory.endswith("M") else None
        if memory_mib is None:
            raise BenchFailed(f"--memory {args.memory} is not a size in MiB such as 512M")
        template = DomainSpec(
            name="", memory_mib=memory_mib, cpus=1, kernel=image.kernel, initrd=initrd,
            cmdline=libvirt_cmdline(host_tsc_khz() or 0), disk=image.disk,
            network=LIBVIRT_NETWORK, console_log=Path(), user=user,
            tb_cache_mib=TCG_TB_SIZE_MIB,
        )  # fmt: skip
        ours = BungalowSide(env, SERVER_IMAGE, BUNGALOW_NETWORK, args.memory)
        with (
            bungalow_network(env, BUNGALOW_NETWORK, BUNGALOW_SUBNET),
            LibvirtHost(libvirt_dir, PREFIX, LIBVIRT_BRIDGE[:6]),
        ):
            theirs = LibvirtSide(libvirt_dir, LIBVIRT_NETWORK, template)
            theirs.create_network(LIBVIRT_BRIDGE, LIBVIRT_SUBNET)
            # The pairs' boots are each side's warm-up too (libvirt's capabilities
            # cache, bungalowd's first initramfs): their times are not counted.
            network = network_rounds([(ours, BUNGALOW_SUBNET), (theirs, LIBVIRT_SUBNET)], args)
            samples = boot_rounds(ours, theirs, args.rounds)
            daemons = daemons_pss(home, libvirt_dir)
        print_results(samples, network, daemons)


if __name__ == "__main__":
    run(main)
