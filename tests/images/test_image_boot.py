"""A built debian-12 image boots with plain QEMU straight into Python as PID 1.

QEMU is started here by hand, not through bungalow.qemu, so that these tests
check exactly the images layer's promise (docs/architecture.md, "Guest boot").
"""

from __future__ import annotations

import re
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bungalow.images import Image, ImageStore
from bungalow.images.disk import ROOT_DISK_SIZE
from bungalow.images.modules import load_order, read_load_order

pytestmark = pytest.mark.vm

#: Given on the kernel command line; /init writes it to /etc/machine-id.
MACHINE_ID = "0123456789abcdef0123456789abcdef"
# Printed by the stand-in agent below, which then powers the VM off.
MARKER = "IMAGES-TEST-AGENT"
STAND_IN_AGENT = f"""
import os, sys
names = sorted(os.listdir("/run/bungalow"))
up = int(open("/sys/class/net/eth0/flags").read(), 16) & 1
routes = [line.split()[:3] for line in open("/proc/net/route")]
default = "via-10.0.2.2" if ["eth0", "00000000", "0202000A"] in routes else "no-route"
machine_id = open("/etc/machine-id").read().strip()
print("{MARKER}", os.getpid(), sys.argv[1:], os.uname().nodename, names, up, default, machine_id,
      flush=True)
os.sync()
open("/proc/sysrq-trigger", "w").write("o")
"""


def _host_tsc_khz() -> int | None:
    """The host's TSC rate: TCG guests see the host TSC, and microvm cannot calibrate it.

    Without ``tsc_early_khz`` a microvm guest on a busy host often fails the
    PIT calibration and hangs before printing anything.
    """
    cpuinfo = Path("/proc/cpuinfo").read_text()
    if "constant_tsc" not in cpuinfo:
        return None
    match = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.MULTILINE)
    return int(float(match.group(1)) * 1000) if match else None


def _qemu_argv(image: Image, initrd: Path, overlay: Path, work: Path, machine: str) -> list[str]:
    bus = "device" if machine == "microvm" else "pci"
    append = (
        "console=ttyS0 quiet panic=-1 root=/dev/vda bungalow.hostname=images-test "
        f"bungalow.machine_id={MACHINE_ID}"
    )
    tsc = _host_tsc_khz()
    if tsc and machine == "microvm":
        append += f" tsc_early_khz={tsc}"
    machine_options = (
        f"-M {machine} -accel tcg,thread=multi -cpu max -m 256M -smp 1 -nodefaults "
        "-no-user-config -display none -no-reboot -serial stdio"
    ).split()
    devices = [
        f"virtio-blk-{bus},drive=root",
        f"virtio-serial-{bus}",
        "virtserialport,chardev=agent,name=org.bungalow.agent",
        f"virtio-rng-{bus}",
        f"virtio-net-{bus},netdev=n0",
    ]
    return [
        "qemu-system-x86_64",
        *machine_options,
        *("-kernel", str(image.kernel), "-initrd", str(initrd), "-append", append),
        *("-drive", f"id=root,file={overlay},format=qcow2,if=none"),
        *("-chardev", f"socket,id=agent,path={work}/agent.sock,server=on,wait=off"),
        *("-netdev", "user,id=n0"),
        *(arg for device in devices for arg in ("-device", device)),
    ]


def _boot(image: Image, initrd: Path, work: Path, machine: str, until: str) -> tuple[float, str]:
    """Boot once; return seconds from QEMU's start until ``until`` appeared, and the console."""
    overlay = work / "overlay.qcow2"
    overlay.unlink(missing_ok=True)
    backing = ["-F", "qcow2", "-b", str(image.disk)]
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", *backing, str(overlay), "4G"], check=True
    )
    argv = _qemu_argv(image, initrd, overlay, work, machine)
    started = time.monotonic()
    console = ""
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) as qemu:
        assert qemu.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(qemu.stdout, selectors.EVENT_READ)
        try:
            while not _has_line(console, until) and time.monotonic() - started < 60:
                if not selector.select(timeout=1):
                    continue
                chunk = qemu.stdout.read1(4096)
                if not chunk:
                    break
                console += chunk.decode(errors="replace")
        finally:
            elapsed = time.monotonic() - started
            qemu.kill()
    return elapsed, console


def _has_line(console: str, text: str) -> bool:
    """True once a whole line holding ``text`` has arrived."""
    return any(text in line for line in console.splitlines(keepends=True) if line.endswith("\n"))


def _boot_with_retry(image: Image, initrd: Path, work: Path, machine: str, until: str) -> str:
    """One retry: a TCG boot may hang before the kernel prints anything (about 2 in 100 on
    microvm, docs/architecture.md, "The life of a request")."""
    for attempt in range(2):
        elapsed, console = _boot(image, initrd, work, machine, until)
        if _has_line(console, until):
            print(f"{machine}: {until!r} after {elapsed:.2f} s (attempt {attempt + 1})")
            return console
    raise AssertionError(f"{machine} never printed {until!r}; console:\n{console}")


def test_the_image_describes_itself(debian12_image: Image) -> None:
    image = debian12_image
    assert image.kind == "linux" and image.profile == "micro"
    assert image.os_release.startswith("Debian GNU/Linux 12")
    assert image.kernel_version and image.kernel_version.endswith("-cloud-amd64")
    # Decompressed ahead of time: the Debian 6.1 cloud kernel has a PVH entry point.
    assert image.kernel is not None and image.kernel.name == "vmlinux"
    assert image.kernel.read_bytes()[:4] == b"\x7fELF"
    assert image.virtual_size == ROOT_DISK_SIZE and 0 < image.size < 1 << 30
    assert image.modules is not None
    order = [name for name, _ in read_load_order(image.modules)]
    assert {"virtio_blk", "virtio_net", "virtio_console", "virtio_mmio", "virtio_pci"} <= set(order)
    # The boot modules, read back, still resolve to the order the build chose.
    assert [name for name, _ in load_order(image.modules, order)] == order


@pytest.mark.parametrize("machine", ["microvm", "q35"])
def test_boots_to_python_as_pid_1(
    shared_store: ImageStore, debian12_image: Image, tmp_path: Path, machine: str
) -> None:
    guest = tmp_path / "guest"
    guest.mkdir()
    (guest / "agent.py").write_text(STAND_IN_AGENT)
    (guest / "protocol.py").write_text("# stand-in\n")
    initrd = shared_store.initrd_for(debian12_image, guest_dir=guest)
    console = _boot_with_retry(debian12_image, initrd, tmp_path, machine, MARKER)
    line = next(line for line in console.splitlines() if line.startswith(MARKER))
    # protocol.py is shipped precompiled when this Python is the guest's version.
    same_python = debian12_image.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    files = (
        ["__pycache__", "agent.py", "protocol.py"] if same_python else ["agent.py", "protocol.py"]
    )
    assert line == f"{MARKER} 1 ['--init'] images-test {files} 1 via-10.0.2.2 {MACHINE_ID}"
    assert "bungalow-init:" not in console


def test_boots_to_the_real_agent(
    shared_store: ImageStore, debian12_image: Image, tmp_path: Path
) -> None:
    initrd = shared_store.initrd_for(debian12_image)
    _boot_with_retry(debian12_image, initrd, tmp_path, "microvm", "bungalow-agent: ready")
