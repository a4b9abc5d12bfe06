"""The image's kernel: unpacked from the Debian package, and decompressed ahead of time.

A Debian ``vmlinuz`` is a bzImage: real-mode set-up code plus a compressed
kernel that decompresses itself at boot. Under TCG that self-decompression
runs one emulated instruction at a time (about 0.3 s of every boot on the
machines this was measured on). The kernel inside is an ELF file with a PVH
entry point, which QEMU boots directly on both microvm and q35, so the
builder decompresses it once, here, and the image keeps that ``vmlinux``; and
the ``vmlinuz`` too, which is what OVMF boots (it loads only an EFI stub).
"""

from __future__ import annotations

import lzma
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

from bungalow.errors import ImageError
from bungalow.images._tools import find_tool, run_tool
from bungalow.images.modules import install_boot_modules

# The compressed payload's first bytes, as the kernel's build writes them.
_MAGICS = (
    (b"\x02\x21\x4c\x18", "lz4"),  # lz4 legacy frame
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
)
#: The kernel as Debian ships it (a bzImage with an EFI stub), kept beside ``vmlinux``.
EFI_KERNEL = "vmlinuz"
_XEN_ELFNOTE_PHYS32_ENTRY = 18  # the note that marks a PVH entry point
_PT_NOTE = 4


def install_kernel(kernel_dir: Path, rootfs: Path, image_dir: Path) -> tuple[str, str]:
    """Unpack the kernel package: the kernel and boot modules to the image, modules to rootfs.

    Returns the kernel version (``6.1.0-37-cloud-amd64``) and the name of the
    kernel file in ``image_dir``. The package is unpacked beside the root file
    system, never onto it: extracting a package over a merged-/usr tree would
    replace its /lib symlink with a directory.
    """
    packages = sorted(kernel_dir.glob("linux-image-*.deb"))
    if len(packages) != 1:
        raise ImageError("The kernel package was not downloaded while the system was built.")
    unpacked = kernel_dir / "unpacked"
    run_tool(
        ["dpkg-deb", "-x", packages[0], unpacked], what="unpacking the kernel", workdir=kernel_dir
    )
    kernels = sorted((unpacked / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise ImageError(f"The kernel package {packages[0].name} holds no single vmlinuz.")
    version = kernels[0].name.removeprefix("vmlinuz-")
    tree = next(
        (
            path
            for path in (unpacked / "usr/lib/modules" / version, unpacked / "lib/modules" / version)
            if path.is_dir()
        ),
        None,
    )
    if tree is None:
        raise ImageError(f"The kernel package {packages[0].name} holds no modules.")
    install_boot_modules(tree, image_dir / "modules")
    # The same place as in the package: /lib/modules resolves to /usr/lib/modules
    # through the /lib symlink of a merged system, and is a directory otherwise.
    target = rootfs / tree.relative_to(unpacked)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(tree, target)
    kernel_name = "vmlinux" if extract_vmlinux(kernels[0], image_dir / "vmlinux") else "vmlinuz"
    # The bzImage is kept either way: OVMF loads only a kernel with an EFI stub (--firmware uefi).
    shutil.move(kernels[0], image_dir / EFI_KERNEL)
    shutil.rmtree(kernel_dir)  # the package and its leftovers: space the file system needs
    # depmod of the guest's own kmod, so that modprobe works in the guest.
    run_tool(
        ["chroot", rootfs, "depmod", "-a", version],
        what="indexing kernel modules",
        workdir=rootfs.parent,
    )
    return version, kernel_name


def extract_vmlinux(bzimage: Path, output: Path) -> bool:
    """Write the decompressed kernel of ``bzimage`` to ``output`` if QEMU can boot it as is.

    False (and nothing written) when the kernel has no PVH entry point or an
    unknown compression: the bzImage itself then boots, only more slowly.
    """
    data = bzimage.read_bytes()
    if data[0x202:0x206] != b"HdrS":
        return False
    setup_sectors = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    payload = data[(setup_sectors + 1) * 512 + offset :][:length]
    method = next((name for magic, name in _MAGICS if payload.startswith(magic)), None)
    if method is None:
        return False
    elf = _decompress(payload, method)
    # The build appends the decompressed size: a cheap check that nothing was cut.
    if len(elf) != struct.unpack("<I", payload[-4:])[0] or not has_pvh_entry(elf):
        return False
    output.write_bytes(elf)
    return True


def _decompress(payload: bytes, method: str) -> bytes:
    # Each decompressor stops at the end of its stream, before the size trailer.
    if method == "xz":
        return lzma.LZMADecompressor().decompress(payload)
    if method == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    # The standard library has neither lz4 nor (before 3.14) zstd. Both tools
    # may complain about the trailer; the length check is what decides.
    result = subprocess.run(
        [find_tool(method), "-dc"], input=payload, capture_output=True, check=False
    )
    return result.stdout


def has_pvh_entry(elf: bytes) -> bool:
    """True when a 64-bit ELF kernel carries the Xen PVH entry note QEMU looks for."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff = struct.unpack_from("<Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        header = phoff + index * phentsize
        kind = struct.unpack_from("<I", elf, header)[0]
        offset, _, _, size = struct.unpack_from("<QQQQ", elf, header + 8)
        if kind == _PT_NOTE and _XEN_ELFNOTE_PHYS32_ENTRY in _note_types(elf, offset, size):
            return True
    return False


def _note_types(elf: bytes, offset: int, size: int) -> set[int]:
    """The types of the "Xen" notes in one PT_NOTE segment."""
    types: set[int] = set()
    position, end = offset, offset + size
    while position + 12 <= end:
        name_size, desc_size, kind = struct.unpack_from("<III", elf, position)
        name = elf[position + 12 : position + 12 + name_size].rstrip(b"\0")
        if name == b"Xen":
            types.add(kind)
        position += 12 + (name_size + 3) // 4 * 4 + (desc_size + 3) // 4 * 4
    return types
