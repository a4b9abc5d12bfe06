"""Disk files: ext4 from a directory, qcow2 conversion with progress, checks before an import.

The ext4 features are pinned through our own mke2fs.conf instead of the
host's defaults: a newer host's mkfs would otherwise turn on features
(``orphan_file``) that an older guest kernel or resize2fs cannot handle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from bungalow.errors import NotFoundError, UserError
from bungalow.images._tools import find_tool, run_tool, tool_error

#: The virtual size of a built image's root disk, and so the default and smallest
#: VM disk. It is sparse: unused space costs nothing in the qcow2 file. The guest
#: grows the file system when its overlay is larger, which under TCG costs seconds
#: of emulated kernel work just after boot, so the default size needs no growing.
ROOT_DISK_SIZE = 4 << 30

_MKE2FS_CONF = """[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
"""

#: What import_disk accepts, as ``qemu-img info`` names the format (never from the file's
#: name): raw and qcow2, and VMware's, VirtualBox's and Hyper-V's disks. A vmdk may be a
#: descriptor naming any host file as an extent, so only one whose extents are itself is
#: taken (monolithicSparse, streamOptimized: what VMware exports); a backing file of any
#: format is refused.
IMPORT_FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhdx")

_PERCENT = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")


def make_ext4(
    source: Path, output: Path, *, size: int = ROOT_DISK_SIZE, label: str = "root"
) -> None:
    """A sparse ext4 image file of ``size`` bytes holding the tree under ``source``.

    Inode tables and the journal are written now (they are zeros, so they cost
    nothing in the qcow2) rather than lazily by every guest kernel at run time.
    """
    config = output.with_name("mke2fs.conf")
    config.write_text(_MKE2FS_CONF)
    argv = [
        find_tool("mkfs.ext4"),
        "-q",
        "-F",
        "-t",
        "ext4",
        "-L",
        label,
        "-E",
        "lazy_itable_init=0,lazy_journal_init=0",
        "-d",
        str(source),
        str(output),
        str(size // 1024) + "k",
    ]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        errors="replace",
        env={**os.environ, "MKE2FS_CONFIG": str(config)},
        check=False,
    )
    config.unlink()
    if result.returncode != 0:
        raise tool_error("making the ext4 file system", result.stderr, output.parent)


def info(path: Path) -> dict[str, Any]:
    """What ``qemu-img info`` knows about a disk file: format, virtual size, backing file."""
    result = run_tool(
        ["qemu-img", "info", "--output=json", path], what=f"reading {path}", workdir=path.parent
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def convert_to_qcow2(
    source: Path,
    source_format: str,
    output: Path,
    *,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Copy ``source`` into a new qcow2 file, reporting the fraction done as qemu-img goes.

    The source format is always given: letting qemu-img probe a raw file would
    let a guest-written header change how the file is read.
    """
    argv = [
        find_tool("qemu-img"),
        "convert",
        "-p",
        "-f",
        source_format,
        "-O",
        "qcow2",
        str(source.absolute()),
        str(output),
    ]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        try:
            _follow_percentages(process.stdout, progress)
        except BaseException:
            process.kill()
            raise
        errors = process.stderr.read().decode(errors="replace")
    if process.returncode != 0:
        raise tool_error("converting the disk to qcow2", errors, output.parent)


def _follow_percentages(stream: IO[bytes], progress: Callable[[float], None] | None) -> None:
    """Feed the "(12.34/100%)" updates qemu-img -p prints (separated by CR) to ``progress``."""
    pending = b""
    while chunk := os.read(stream.fileno(), 4096):
        pending += chunk
        *done, pending = re.split(rb"[\r\n]", pending)
        for piece in done:
            match = _PERCENT.search(piece.decode(errors="replace"))
            if match and progress is not None:
                progress(float(match.group(1)) / 100)


def allocated_size(path: Path) -> int:
    """Bytes a file or directory tree really takes on the host's disk (sparse files count less)."""
    if path.is_file():
        return path.stat().st_blocks * 512
    total = path.stat().st_blocks * 512
    for entry in path.rglob("*"):
        try:  # a file renamed or pruned meanwhile (an initramfs another start just made)
            info = entry.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISLNK(info.st_mode):
            total += info.st_blocks * 512
    return total


def check_importable(path: Path) -> tuple[Path, str, int]:
    """The absolute path, format (``qemu-img info``'s) and virtual size of a disk file fit to
    import; NotFoundError or UserError with a sentence otherwise."""
    source = path.expanduser().absolute()
    if not source.exists():
        raise NotFoundError(f"There is no file {source} to import; check the path.")
    if not source.is_file():
        raise UserError(f"{source} is not a regular file; give the path of a disk image file.")
    details = info(source)
    source_format = str(details.get("format"))
    if source_format not in IMPORT_FORMATS:
        raise UserError(
            f"{source} is a {source_format} image; bungalow imports raw, qcow2, vmdk, vdi and "
            "vhdx disks (convert it with `qemu-img convert -O qcow2`)."
        )
    # A backing or external data file would be read from wherever it points on the host.
    specific = details.get("format-specific", {}).get("data", {})
    extents = {Path(str(e.get("filename", ""))) for e in specific.get("extents", ())}
    if details.get("backing-filename") or specific.get("data-file") or extents - {source}:
        raise UserError(
            f"{source} depends on another file; flatten it first with "
            "`qemu-img convert -O qcow2 SOURCE FLAT.qcow2` and import the result."
        )
    virtual_size = int(details.get("virtual-size", 0))
    if virtual_size == 0:
        raise UserError(f"{source} is empty; give the path of a raw or qcow2 disk.")
    if source_format == "raw" and not _looks_like_a_disk(source, virtual_size):
        raise UserError(
            f"{source} does not look like a disk: qemu-img takes any file as raw, but a raw "
            "disk is whole 512-byte sectors of binary data, and this is text or cut short; "
            "give the path of a raw or qcow2 disk."
        )
    return source, source_format, virtual_size


def _looks_like_a_disk(path: Path, size: int) -> bool:
    """Whether a file qemu-img calls raw can be a disk: whole sectors, and its first 4 KiB
    not lines of text (a boot record, partition table or file system holds zero bytes
    there, and is not UTF-8)."""
    if size % 512:
        return False
    with path.open("rb") as file:
        head = file.read(4096)
    try:
        text = head.decode()
    except UnicodeDecodeError:
        return True
    return "\0" in text or "\n" not in text


def sha256(path: Path) -> str:
    """The hex sha256 of a file: an image's id is the hash of its disk."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
