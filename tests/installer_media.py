"""A home-made installer ISO for the tests: it installs a bootable system onto a blank disk.

Both media are made with grub-mkrescue (grub-pc-bin and grub-efi-amd64-bin, so they boot
under SeaBIOS and OVMF; xorriso, mtools) from a Debian cloud kernel and busybox-static,
offline:

- the *system* is a hybrid ISO (GRUB's MBR and a partition table, so SeaBIOS boots it
  from a hard disk too) whose GRUB boots the kernel with an initramfs that prints
  :data:`MARKER` on ttyS0 and powers off;
- the *installer* ISO boots the same kernel with an initramfs holding the virtio
  modules, busybox and the system image; its init writes the system onto /dev/vda
  (partition table and all), prints :data:`INSTALLED` and powers off.

The installer is cached under the test image cache, keyed by the sha256 of every input.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MARKER = "bungalow-test: the installed system booted from its disk"
INSTALLED = "bungalow-test: installed onto /dev/vda"
BUSYBOX = Path("/bin/busybox")
GRUB_PLATFORMS = Path("/usr/lib/grub")
#: The order the kernel needs them in (a module after those it uses).
VIRTIO_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_blk",
)
CMDLINE = "console=ttyS0 quiet panic=-1"

_PRELUDE = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
"""
SYSTEM_INIT = _PRELUDE + f'echo "{MARKER}"\npoweroff -f\n'
INSTALLER_INIT = (
    _PRELUDE
    + "for m in "
    + " ".join(VIRTIO_MODULES)
    + "; do insmod /lib/modules/$m.ko 2>/dev/null; done\n"
    + "i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n"
    + "dd if=/system.iso of=/dev/vda bs=1M conv=fsync 2>/dev/null && sync && "
    + f'echo "{INSTALLED}"\npoweroff -f\n'
)
GRUB_CFG = f"""set timeout=0
menuentry system {{
    linux /vmlinuz {CMDLINE}
    initrd /initrd.img
}}
"""


def installer_iso(kernel: Path, cache: Path) -> Path:
    """The installer ISO for ``kernel`` (a bzImage whose modules are under
    ``kernel.parents[1] / "lib/modules"``), built once and kept in ``cache``."""
    modules = _modules(kernel)
    key = _key(kernel, modules)
    built = cache / "test-media" / f"installer-{key}.iso"
    if built.exists():
        return built
    built.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=built.parent) as work:
        root = Path(work)
        system = root / "system.iso"
        _mkrescue(root / "system", kernel, _initramfs(root / "system-initrd", SYSTEM_INIT), system)
        installer_initrd = _initramfs(
            root / "installer-initrd", INSTALLER_INIT, {"system.iso": system, **modules}
        )
        iso = root / "installer.iso"
        _mkrescue(root / "installer", kernel, installer_initrd, iso)
        os.replace(iso, built)
    return built


def _modules(kernel: Path) -> dict[str, Path]:
    tree = next((kernel.parents[1] / "lib" / "modules").glob("*/kernel"))
    found = {path.stem: path for path in tree.rglob("*.ko") if path.stem in VIRTIO_MODULES}
    missing = set(VIRTIO_MODULES) - set(found)
    assert not missing, f"the kernel's modules lack {sorted(missing)}"
    return {f"lib/modules/{name}.ko": path for name, path in found.items()}


def _key(kernel: Path, modules: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for path in (kernel, BUSYBOX, *sorted(modules.values())):
        digest.update(path.read_bytes())
    grub = subprocess.run(["grub-mkrescue", "--version"], capture_output=True, text=True)
    # grub-mkrescue makes media for every GRUB platform installed (i386-pc for BIOS,
    # x86_64-efi for UEFI: grub-efi-amd64-bin), so the media change with that set.
    platforms = " ".join(sorted(path.name for path in GRUB_PLATFORMS.iterdir() if path.is_dir()))
    for text in (SYSTEM_INIT, INSTALLER_INIT, GRUB_CFG, grub.stdout, platforms):
        digest.update(text.encode())
    return digest.hexdigest()[:16]


def _initramfs(root: Path, init: str, files: dict[str, Path] | None = None) -> Path:
    """A gzip'd newc cpio (cpio, gzip) of busybox, ``init`` and ``files`` (path: source)."""
    for directory in ("bin", "dev", "proc", "sys", "lib/modules"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    (root / "init").write_text(init)
    (root / "init").chmod(0o755)
    for name, source in (files or {}).items():
        shutil.copy(source, root / name)
    names = "\n".join(str(path.relative_to(root)) for path in sorted(root.rglob("*"))).encode()
    archive = root.with_suffix(".img")
    cpio = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
        input=names,
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    archive.write_bytes(
        subprocess.run(["gzip", "-1"], input=cpio, capture_output=True, check=True).stdout
    )
    return archive


def _mkrescue(tree: Path, kernel: Path, initrd: Path, output: Path) -> None:
    """A GRUB rescue ISO (BIOS, hybrid) booting ``kernel`` with ``initrd``."""
    (tree / "boot" / "grub").mkdir(parents=True)
    shutil.copy(kernel, tree / "vmlinuz")
    shutil.copy(initrd, tree / "initrd.img")
    (tree / "boot" / "grub" / "grub.cfg").write_text(GRUB_CFG)
    subprocess.run(["grub-mkrescue", "-o", str(output), str(tree)], capture_output=True, check=True)
