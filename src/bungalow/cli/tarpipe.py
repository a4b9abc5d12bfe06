"""Tar streams for ``bungalow cp``, made and read in chunks, never whole in memory."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

from bungalow.errors import UserError

CHUNK = 256 * 1024


def tar_stream(folder: Path) -> Iterator[bytes]:
    """A tar of ``folder``'s contents (``./...``), made by a thread into a pipe.

    Links inside stay links. Mounts of pseudo file systems (/proc, /sys...) below it
    come as empty folders, and a folder on one is refused: the sizes of their files
    say nothing of their contents, so a tar of them would be wrong.
    """
    fs, mounts = _mounts_at(os.path.realpath(folder))
    if fs in _pseudo_fs():
        raise UserError(
            f"{folder} is on a {fs} file system, whose files' sizes say nothing of their "
            "contents; copy the files you need one by one."
        )
    emptied = {os.path.join(".", below) for below, kind in mounts if kind in _pseudo_fs()}
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb") as sink, tarfile.open(fileobj=sink, mode="w|") as tar:
                _add_tree(tar, folder, ".", emptied)
        except BaseException as exc:  # reported to the reading side
            failure.append(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk
    thread.join()
    if failure:
        error = failure[0]
        reason = error.strerror if isinstance(error, OSError) else error
        raise UserError(f"Reading {folder} failed: {reason}.")


def _add_tree(tar: tarfile.TarFile, path: Path, name: str, emptied: set[str]) -> None:
    """Add ``path`` as ``name``, and what is inside it unless ``name`` is to come empty."""
    tar.add(path, arcname=name, recursive=False)
    if path.is_dir() and not path.is_symlink() and name not in emptied:
        for entry in sorted(os.listdir(path)):
            _add_tree(tar, path / entry, os.path.join(name, entry), emptied)


def _mounts_at(folder: str) -> tuple[str, list[list[str]]]:
    # The guest agent reads /proc/self/mountinfo the same way; its code is standard library.
    from bungalow.guest.agent_files import mounts_at

    return mounts_at(folder)


def _pseudo_fs() -> frozenset[str]:
    from bungalow.guest.protocol import PSEUDO_FS

    return PSEUDO_FS


def link_tar(name: str, target: str, mtime: float) -> bytes:
    """A tar holding one symbolic link, ``name`` -> ``target``."""
    member = tarfile.TarInfo(name)
    member.type = tarfile.SYMTYPE
    member.linkname = target
    member.mode = 0o777
    member.mtime = int(mtime)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(member)
    return buffer.getvalue()


class ChunkReader:
    """A file-like ``read`` over an iterator of byte chunks, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data
