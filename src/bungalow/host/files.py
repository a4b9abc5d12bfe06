"""Large sparse files on the host: copy them and checksum them without reading their holes.

A snapshot's memory file is as long as the guest's RAM but mostly holes (pages
the guest never touched); a VM disk overlay is mostly holes too. Both are
walked extent by extent with ``SEEK_DATA``/``SEEK_HOLE``, so a 512 MiB memory
file with 100 MiB of data costs 100 MiB of reading, and a copy stays sparse.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

_CHUNK = 1 << 20


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of each stretch of ``fd`` that holds data; the rest are holes."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after offset
                return
            if exc.errno == errno.EINVAL:  # the file system cannot tell: all data
                yield offset, size - offset
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end - start
        offset = end


def sparse_copy(source: Path, destination: Path) -> None:
    """Copy ``source`` to ``destination``, keeping its holes; the copy is fsynced."""
    with open(source, "rb") as src, open(destination, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        for start, length in data_extents(src.fileno(), size):
            done = 0
            while done < length:
                copied = os.copy_file_range(
                    src.fileno(), dst.fileno(), length - done, start + done, start + done
                )
                if copied == 0:
                    break
                done += copied
        dst.truncate(size)
        os.fsync(dst.fileno())


def digest(path: Path) -> str:
    """sha256 over the data extents and where they are, so holes cost nothing to check.

    Two files with the same digest hold the same bytes at the same offsets and
    have the same length; a hole and written zeros may differ, which is fine for
    telling a damaged file from a good one.
    """
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        hasher.update(f"size {size}\n".encode())
        for start, length in data_extents(fd, size):
            hasher.update(f"extent {start}\n".encode())
            os.lseek(fd, start, os.SEEK_SET)
            remaining = length
            while remaining:
                block = os.read(fd, min(_CHUNK, remaining))
                if not block:
                    break
                hasher.update(block)
                remaining -= len(block)
    return hasher.hexdigest()


def allocated(*paths: Path) -> int:
    """Bytes the file system has really given these files (holes not counted)."""
    total = 0
    for path in paths:
        try:
            total += path.stat().st_blocks * 512
        except OSError:
            continue
    return total


def tree_allocated(directory: Path) -> int:
    """Bytes allocated to every file under ``directory``."""
    if not directory.exists():
        return 0
    return allocated(*(p for p in directory.rglob("*") if p.is_file()))
