"""Boot of an ISO-installed pc VM from its own disk: bungalow against plain QEMU, per firmware.

The installed system is the tests' home-made one (tests/installer_media.py): a
grub-mkrescue hybrid image that an installer ISO writes onto a blank disk. Once,
bungalow installs it (``launch --iso``, the guest powers off) and ejects the CD.
Then each round times, from the start of ``bungalow start`` (plain: QEMU's start) to
the installed system's marker line on the serial console: firmware, GRUB, kernel,
initramfs. Both sides boot the same disk (plain QEMU a flat copy of it) with the
same firmware, machine type, CPU, memory and devices; rounds are interleaved. Plain
QEMU runs in a control group beside bungalow's VMs' (``bungalow/bench-plain-PID``): in the
root group it would weigh as much as all of bungalow's VMs together on a busy host.

Firmwares are iterated: ``bios`` (SeaBIOS, QEMU's default) and ``uefi`` (OVMF's 4M pair
as QEMU's firmware descriptors name it, the plain side with its own copy of the variable
store, kept across its rounds as the VM keeps its efivars.fd).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from _support import ROOT, BenchFailed, cli, images_dir

from bungalow.host.cgroups import VmCgroup
from bungalow.qemu.firmware import resolve

if str(ROOT) not in sys.path:  # the tests' media builder and kernel cache
    sys.path.insert(0, str(ROOT))

from tests.conftest import KERNEL_CACHE, PREEXTRACTED_KERNEL, _download_kernel, _find_kernel
from tests.installer_media import MARKER, installer_iso

BOOT_TIMEOUT = 120.0
POLL = 0.005


@dataclass(frozen=True)
class Firmware:
    """How each side boots with one firmware: ``launch`` options, and the UEFI build whose
    pflash drives plain QEMU is given (None: SeaBIOS, QEMU's default on q35)."""

    launch: tuple[str, ...] = ()
    uefi: str | None = None

    def plain(self, home: Path) -> list[str]:
        """Plain QEMU's firmware arguments, its variable store copied into ``home`` once."""
        if self.uefi is None:
            return []
        pair = resolve(self.uefi)
        if pair is None:
            raise BenchFailed(f"no {self.uefi} firmware is installed (apt-get install ovmf)")
        store = home / f"plain-{self.uefi}-vars.fd"
        if not store.exists():
            shutil.copyfile(pair.vars_template, store)
        return [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={pair.code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={store}",
        ]  # fmt: skip


FIRMWARES: Mapping[str, Firmware] = {
    "bios": Firmware(),
    "uefi": Firmware(launch=("--firmware", "uefi"), uefi="uefi"),
}


def compare_installed(env: dict[str, str], home: Path, memory: str, rounds: int) -> None:
    """Print, per firmware, each side's median seconds to the marker line and their ratio."""
    installer = installer_iso(_kernel(), images_dir())
    for firmware, boot in FIRMWARES.items():
        name = f"bench-iso-{firmware}"
        disk = _install(env, home, name, installer, memory, boot)
        plain = home / f"plain-{firmware}.qcow2"
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", disk, plain], check=True)
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(_bungalow_boot(env, name, disk.parent / "run" / "console.log"))
            theirs.append(_plain_boot(plain, memory, boot.plain(home)))
        cli(env, "rm", name)
        b, p = statistics.median(ours), statistics.median(theirs)
        print(
            f"ISO-installed pc VM, {firmware}, boot from its disk to its marker line"
            f"  bungalow {b:.2f}s  plain QEMU {p:.2f}s  ratio {b / p:.2f} (target <= 1.15)",
            flush=True,
        )
    for image in json.loads(cli(env, "image", "ls", "--json")):
        if image["kind"] == "iso" and image["name"].startswith("installer-"):
            cli(env, "image", "rm", image["name"])  # the shared store keeps no bench media


def _kernel() -> Path:
    found = _find_kernel(PREEXTRACTED_KERNEL) or _find_kernel(KERNEL_CACHE / "x")
    return found or _download_kernel(KERNEL_CACHE)


def _install(
    env: dict[str, str], home: Path, name: str, iso: Path, memory: str, boot: Firmware
) -> Path:
    """Install the system onto a new VM's blank disk and eject the CD; the disk's path."""
    cli(env, "launch", name, "--iso", str(iso), "--disk", "128M", "--memory", memory, *boot.launch)
    deadline = time.monotonic() + BOOT_TIMEOUT
    while json.loads(cli(env, "inspect", name))["state"] != "stopped":
        if time.monotonic() > deadline:
            raise BenchFailed(f"the installer in {name} did not power off in {BOOT_TIMEOUT:.0f} s")
        time.sleep(0.2)
    cli(env, "media", "eject", name)
    vm_id = json.loads(cli(env, "inspect", name))["id"]
    return home / "vms" / vm_id / "disk.qcow2"


def _bungalow_boot(env: dict[str, str], name: str, console: Path) -> float:
    seen = _markers(console)
    started = time.monotonic()
    cli(env, "start", name)
    while _markers(console) == seen:
        if time.monotonic() - started > BOOT_TIMEOUT:
            raise BenchFailed(f"{name} showed no marker line within {BOOT_TIMEOUT:.0f} s")
        time.sleep(POLL)
    took = time.monotonic() - started
    deadline = time.monotonic() + BOOT_TIMEOUT
    while json.loads(cli(env, "inspect", name))["state"] != "stopped":  # it powers off
        if time.monotonic() > deadline:
            raise BenchFailed(f"{name} did not power off after its marker line")
        time.sleep(0.1)
    return took


def _markers(console: Path) -> int:
    try:
        return console.read_text(errors="replace").count(MARKER)
    except FileNotFoundError:
        return 0


def _plain_boot(disk: Path, memory: str, firmware: list[str]) -> float:
    """What a person would write for the same machine: q35, the disk first, a NIC
    without option ROM, the serial port on stdout; the disk opened as bungalow opens it
    (O_DIRECT, Linux AIO: qemu/disk.py), as the micro line's plain side does too. With the
    page cache instead, plain QEMU's firmware and GRUB read the kernel faster still (about
    3 s of 9 under load here): a firmware reads the disk in small synchronous requests."""
    argv = [
        "qemu-system-x86_64", "-M", "q35", "-accel", "tcg,thread=multi", "-cpu", "max",
        "-smp", "1", "-m", memory, "-nodefaults", "-no-user-config", "-display", "none",
        "-no-reboot", "-serial", "stdio", *firmware,
        "-drive", f"file={disk},if=none,id=d0,format=qcow2,cache=none,aio=native,readonly=on",
        "-device", "virtio-blk-pci,drive=d0,bootindex=1",
        "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=",
        "-device", "virtio-rng-pci",
    ]  # fmt: skip
    with _beside_the_vms() as group:
        return _time_to_marker(argv, group)


@contextlib.contextmanager
def _beside_the_vms() -> Iterator[VmCgroup | None]:
    """A control group of the bench's own where bungalow keeps its VMs', removed after."""
    group = VmCgroup(f"bench-plain-{os.getpid()}")
    if not group.available:
        yield None
        return
    group.create()
    try:
        yield group
    finally:
        group.remove()


def _time_to_marker(argv: list[str], group: VmCgroup | None) -> float:
    started = time.monotonic()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        if group is not None:
            group.add(process.pid)
        assert process.stdout is not None
        for line in process.stdout:
            if MARKER.encode() in line:
                return time.monotonic() - started
            if time.monotonic() - started > BOOT_TIMEOUT:
                break
        raise BenchFailed("plain QEMU's guest showed no marker line")
    finally:
        process.wait(timeout=BOOT_TIMEOUT)
