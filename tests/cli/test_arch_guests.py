"""Guests of other architectures on real TCG VMs: a 32-bit Debian (i386, 686 kernel) and an
arm64 one (qemu-system-aarch64 -M virt) run exec, keep a snapshot and clone from it; host info
lists the three architectures; what a host cannot run is refused with one sentence.

The images are built once per machine into the shared image cache (debian-12-i386 about
2 minutes, debian-12-arm64 about 3.5 minutes through qemu-user-static, on a 2-CPU host).
Each guest is booted once for the module.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.images.rootfs import DEFAULT_MIRROR, MIRROR_ENV, SECURITY_MIRROR_ENV
from tests.conftest import Env, _finish, _new_env

pytestmark = pytest.mark.vm

I386 = "debian-12-i386"
ARM64 = "debian-12-arm64"
#: The VM of each image, and what its guest's kernel says it is (``uname -m``).
GUESTS = {"old32": (I386, "i686"), "arm": (ARM64, "aarch64")}


@pytest.fixture(scope="module")
def arch_images(image_cache: Path) -> Path:
    """debian-12-i386 and debian-12-arm64 in the shared image cache, built on first need."""
    home = Path(tempfile.mkdtemp(prefix="bgw-", dir="/tmp"))
    env = Env(home, image_cache)
    # This workplace's package proxy serves bookworm-security's i386 index out of step with
    # its Release file (apt's hash check fails) and 404s bullseye-security's i386 packages;
    # test images need no security updates, so they are built from the main archive alone.
    env.env.setdefault(MIRROR_ENV, DEFAULT_MIRROR)
    env.env.setdefault(SECURITY_MIRROR_ENV, "none")
    try:
        for image in (I386, ARM64):
            env.run("image", "build", image, timeout=1800)
    finally:
        env.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    return image_cache


@pytest.fixture(scope="module")
def guests(arch_images: Path) -> Iterator[Env]:
    env = _new_env()
    for name, (image, _) in GUESTS.items():
        env.run("launch", name, "--image", image, "--memory", "384M", timeout=600)
    yield env
    _finish(env)


def _sh(env: Env, vm: str, script: str) -> str:
    return env.run("exec", vm, "--", "sh", "-c", script).stdout.strip()


@pytest.mark.parametrize("vm", sorted(GUESTS))
def test_the_guest_runs_its_own_architecture(guests: Env, vm: str) -> None:
    bits = "python3 -c 'import struct; print(8 * struct.calcsize(\"P\"))'"
    machine, program, pointer = _sh(guests, vm, f"uname -m; file -b /bin/ls; {bits}").split("\n")
    assert machine == GUESTS[vm][1]
    if vm == "old32":
        assert program.startswith("ELF 32-bit LSB") and "Intel 80386" in program
        assert pointer == "32"
    else:
        assert program.startswith("ELF 64-bit LSB") and "ARM aarch64" in program
        assert pointer == "64"


@pytest.mark.parametrize("vm", sorted(GUESTS))
def test_a_snapshot_restores_and_clones(guests: Env, vm: str, tmp_path: Path) -> None:
    (tmp_path / "note").write_text(f"kept by {vm}\n")
    guests.run("cp", str(tmp_path / "note"), f"{vm}:/root/note")
    guests.run("snapshot", "create", vm, "kept")
    guests.run("exec", vm, "--", "rm", "/root/note")
    clone = f"{vm}-c"
    guests.run("clone", vm, clone, "--snapshot", "kept", timeout=600)
    try:
        assert _sh(guests, clone, "cat /root/note; uname -m; hostname").split("\n") == [
            f"kept by {vm}",
            GUESTS[vm][1],
            clone,
        ]
    finally:
        guests.run("rm", "-f", clone)
    guests.run("snapshot", "restore", vm, "kept", timeout=600)
    assert _sh(guests, vm, "cat /root/note") == f"kept by {vm}"


def test_host_info_lists_the_three_architectures(guests: Env) -> None:
    info = json.loads(guests.run("host", "info", "--json").stdout)
    arches = {arch["name"]: arch for arch in info["architectures"]}
    assert list(arches) == ["x86_64", "i386", "aarch64"]
    arm = arches["aarch64"]
    assert (arm["qemu_binary"], arm["package"], arm["installed"], arm["binfmt"]) == (
        "qemu-system-aarch64", "qemu-system-arm", True, True,
    )  # fmt: skip
    assert arm["accel"]["name"] == "tcg"
    assert "KVM runs only the host's own architecture" in arm["accel"]["reason"]
    assert arches["i386"]["qemu_binary"] == "qemu-system-x86_64"
    assert "aarch64" in guests.run("host", "info").stdout


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (("--profile", "pc"), "is aarch64, which boots on QEMU's virt machine (the micro profile)"),
        (("--accel", "kvm"), "is aarch64, which KVM cannot run on this x86_64 host"),
        (("--firmware", "uefi"), "takes no --firmware or --tpm; drop --firmware uefi."),
        (("--tpm",), "takes no --firmware or --tpm; drop --tpm."),
    ],
)
def test_what_an_arm64_image_cannot_have(guests: Env, args: tuple[str, ...], sentence: str) -> None:
    refused = guests.run("launch", "bad", "--image", ARM64, *args, check=False)
    assert refused.returncode != 0 and sentence in refused.stderr
    assert "bad" not in [vm["name"] for vm in json.loads(guests.run("ls", "--json").stdout)]


@pytest.fixture
def no_arm_emulator(arch_images: Path, tmp_path: Path) -> Iterator[Env]:
    """An installation whose PATH has every program of this host but qemu-system-aarch64."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin"):
        for entry in os.scandir(directory):
            if entry.name != "qemu-system-aarch64" and not (bin_dir / entry.name).exists():
                (bin_dir / entry.name).symlink_to(entry.path)
    env = _new_env()
    env.env["PATH"] = f"{bin_dir}:/usr/local/sbin:/usr/sbin:/sbin"
    yield env
    _finish(env)


def test_an_architecture_without_its_emulator(no_arm_emulator: Env) -> None:
    env = no_arm_emulator
    package = "install the Debian package qemu-system-arm (apt-get install qemu-system-arm)"
    refused = env.run("launch", "arm", "--image", ARM64, check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip() == (
        f"error: The image {ARM64} is aarch64: aarch64 guests run under qemu-system-aarch64, "
        f"which is not installed; {package}."
    )
    assert json.loads(env.run("ls", "--json").stdout) == []
    assert not (env.home / "vms").exists() or not any((env.home / "vms").iterdir())
    build = env.run("image", "build", ARM64, "--force", check=False)
    assert build.returncode != 0 and package in build.stderr
    info = json.loads(env.run("host", "info", "--json").stdout)
    arm = next(arch for arch in info["architectures"] if arch["name"] == "aarch64")
    assert (arm["installed"], arm["package"]) == (False, "qemu-system-arm")
