"""The initramfs: its contents as the cpio tool sees them, its /init, and its cache."""

from __future__ import annotations

import importlib.resources
import io
import os
import subprocess
from pathlib import Path

import pytest

from bungalow.errors import ImageError
from bungalow.guest import AGENT_ENTRY, GUEST_FILES
from bungalow.images import Image, ImageStore
from bungalow.images.initramfs import NewcWriter
from bungalow.images.modules import install_boot_modules

from .conftest import MakeModule

INIT = importlib.resources.files("bungalow.images").joinpath("initramfs_init.sh")


@pytest.fixture
def linux_image(store: ImageStore, tmp_path: Path, make_module: MakeModule) -> Image:
    """A small ``linux`` image committed the way the builder commits one."""
    tree = tmp_path / "tree"
    (tree / "kernel").mkdir(parents=True)
    (tree / "kernel/virtio.ko").write_bytes(make_module(name="virtio"))
    (tree / "kernel/virtio_blk.ko").write_bytes(make_module(depends=("virtio",)))
    with store.staging() as staging:
        staged = staging / "image"
        staged.mkdir()
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", str(staged / "disk.qcow2"), "1G"],
            check=True,
        )
        (staged / "vmlinuz").write_bytes(b"not really a kernel")
        install_boot_modules(tree, staged / "modules", wanted=["virtio_blk"])
        return store.commit(
            staged,
            "tiny",
            {"kind": "linux", "os_release": "Tiny", "kernel_version": "0.0", "source": "test"},
        )


@pytest.fixture
def guest_dir(tmp_path: Path) -> Path:
    guest = tmp_path / "guest"
    guest.mkdir()
    (guest / "agent.py").write_text("print('agent')\n")
    (guest / "protocol.py").write_text("VERSION = 1\n")
    (guest / "helper.py").write_text("# a third guest file\n")
    return guest


def _members(archive: Path) -> dict[str, str]:
    """Member name -> the first character of its mode ('-', 'd', 'l', 'c'), by ``cpio -tv``."""
    listing = subprocess.run(
        ["cpio", "-tv", "--quiet"],
        stdin=archive.open("rb"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    members = {}
    for line in listing.splitlines():
        fields = line.split()
        name = fields[8] if fields[0][0] != "c" else fields[9]
        members[name] = fields[0][0]
    return members


def test_the_archive_holds_busybox_modules_init_and_agent(
    store: ImageStore, linux_image: Image, guest_dir: Path
) -> None:
    initrd = store.initrd_for(linux_image, guest_dir=guest_dir)
    assert initrd.parent == linux_image.directory and initrd.name.startswith("initrd-")
    members = _members(initrd)
    expected = {
        "init": "-",
        "bin/busybox": "-",
        "bin/sh": "l",
        "sbin/switch_root": "l",
        "sbin/insmod": "l",
        "dev/console": "c",
        "newroot": "d",
        "lib/modules/load-order": "-",
        "lib/modules/virtio.ko": "-",
        "lib/modules/virtio_blk.ko": "-",
        "bungalow/agent.py": "-",
        "bungalow/protocol.py": "-",
        "bungalow/helper.py": "-",
    }
    assert {name: members.get(name) for name in expected} == expected


def test_files_come_out_byte_for_byte(
    store: ImageStore, linux_image: Image, guest_dir: Path, tmp_path: Path
) -> None:
    initrd = store.initrd_for(linux_image, guest_dir=guest_dir)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        ["cpio", "-id", "--quiet", "--no-absolute-filenames", "init", "bungalow/*", "lib/*"],
        stdin=initrd.open("rb"),
        cwd=out,
        check=True,
    )
    assert (out / "init").read_bytes() == INIT.read_bytes()
    assert (out / "init").stat().st_mode & 0o111
    assert (out / "bungalow/agent.py").read_bytes() == (guest_dir / "agent.py").read_bytes()
    assert (out / "lib/modules/load-order").read_text().split() == ["virtio", "virtio_blk"]


def test_the_initramfs_is_cached_per_set_of_guest_files(
    store: ImageStore, linux_image: Image, guest_dir: Path
) -> None:
    first = store.initrd_for(linux_image, guest_dir=guest_dir)
    assert store.initrd_for(linux_image, guest_dir=guest_dir) == first
    (guest_dir / "agent.py").write_text("print('agent, version 2')\n")
    second = store.initrd_for(linux_image, guest_dir=guest_dir)
    assert second != first and first.exists() and second.exists()
    assert not list(linux_image.directory.glob(".initrd-*"))


def test_only_the_recently_used_initramfs_files_are_kept(
    store: ImageStore, linux_image: Image, guest_dir: Path
) -> None:
    first = store.initrd_for(linux_image, guest_dir=guest_dir)
    os.utime(first, (1, 1))  # long unused
    for version in range(5):
        (guest_dir / "agent.py").write_text(f"print({version})\n")
        store.initrd_for(linux_image, guest_dir=guest_dir)
    assert len(list(linux_image.directory.glob("initrd-*.img"))) == 4
    assert not first.exists()


def test_missing_agent_files_are_a_clear_error(
    store: ImageStore, linux_image: Image, tmp_path: Path
) -> None:
    empty = tmp_path / "no-agent"
    empty.mkdir()
    with pytest.raises(ImageError, match=r"guest agent file agent\.py is missing"):
        store.initrd_for(linux_image, guest_dir=empty)
    assert not list(linux_image.directory.glob("initrd-*"))


def test_the_installed_guest_files_are_used_by_default(
    store: ImageStore, linux_image: Image
) -> None:
    members = _members(store.initrd_for(linux_image))
    shipped = {name for name, kind in members.items() if name.startswith("bungalow/")}
    assert shipped == {f"bungalow/{path.name}" for path in GUEST_FILES}
    assert all(members[name] == "-" for name in shipped)  # plain files
    assert f"bungalow/{AGENT_ENTRY}" in shipped and len(shipped) >= 8


def test_disk_images_boot_without_an_initramfs(store: ImageStore, tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    disk.write_bytes(b"\0" * 65536)
    image = store.import_disk(disk, "plain")
    with pytest.raises(ImageError, match="boots through firmware"):
        store.initrd_for(image)


def test_init_is_valid_shell_that_ends_in_the_agent() -> None:
    script = INIT.read_text()
    check = subprocess.run(["/bin/busybox", "sh", "-n", "-c", script], capture_output=True)
    assert check.returncode == 0, check.stderr
    lines = [line.strip() for line in script.splitlines() if line.strip()]
    assert lines[0] == "#!/bin/sh"
    entry = "exec switch_root /newroot /usr/bin/python3 -S /run/bungalow/agent.py --init"
    assert lines[-1] == entry
    for step in (
        "mount -t devtmpfs",
        "mount --move /proc",
        "mount --move /sys",
        "mount --move /dev",
        "/newroot/run",
        "/proc/sys/kernel/hostname",
    ):
        assert step in script


def test_newc_writer_pads_odd_sizes_for_cpio() -> None:
    buffer = io.BytesIO()
    archive = NewcWriter(buffer)
    archive.directory("d")
    archive.file("d/odd-name.txt", b"12345")
    archive.symlink("d/link", "odd-name.txt")
    archive.close()
    data = buffer.getvalue()
    assert len(data) % 4 == 0
    listing = (
        subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True)
        .stdout.decode()
        .split()
    )
    assert listing == ["d", "d/odd-name.txt", "d/link"]
