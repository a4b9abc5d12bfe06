"""``bungalow cp``: files and folders both ways, with Docker's rules for destinations.

A folder copied onto an existing folder lands inside it; onto a new path, it
becomes that path. Folders travel as tar streams built and unpacked on the fly.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from bungalow.client.http import Client
from bungalow.errors import NotFoundError, UserError

_REMOTE = re.compile(r"^([a-z0-9][a-z0-9-]*):(.*)$")
CHUNK = 256 * 1024


def split_remote(spec: str) -> tuple[str, str] | None:
    """``("web", "/var/www")`` for ``web:/var/www``; None for a local path."""
    match = _REMOTE.match(spec)
    if not match or spec.startswith(("/", ".")):
        return None
    return match.group(1), match.group(2) or "/root"


def copy(api: Client, source: str, dest: str) -> None:
    src_remote, dest_remote = split_remote(source), split_remote(dest)
    if src_remote and dest_remote:
        raise UserError("Copying from one VM to another is not supported; copy via the host.")
    if dest_remote:
        upload(api, Path(source), *dest_remote)
    elif src_remote:
        download(api, *src_remote, Path(dest))
    else:
        raise UserError("Neither path names a VM; write one of them as VM:PATH, e.g. web:/tmp.")


def upload(api: Client, local: Path, vm: str, remote: str) -> None:
    if not local.exists():
        raise NotFoundError(f"There is no {local} on this host; check the path.")
    target = api.stat(vm, remote)
    into_dir = target.get("exists") and target.get("type") == "dir"
    if local.is_dir():
        if into_dir:
            api.upload_tar(vm, remote, _tar_stream(local, local.name))
        else:
            api.upload_tar(vm, remote, _tar_stream(local, "."))
        return
    path = str(PurePosixPath(remote) / local.name) if into_dir else remote
    mode = local.stat().st_mode & 0o7777
    api.upload_file(vm, path, _file_chunks(local), mode=mode)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _tar_stream(folder: Path, arcname: str) -> Iterator[bytes]:
    """A tar of ``folder`` produced by a thread into a pipe, read here in chunks."""
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb") as sink, tarfile.open(fileobj=sink, mode="w|") as tar:
                tar.add(folder, arcname=arcname)
        except BaseException as exc:  # reported to the reading side
            failure.append(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk
    thread.join()
    if failure:
        raise UserError(f"Reading {folder} failed: {failure[0]}.")


class _ChunkReader:
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


def download(api: Client, vm: str, remote: str, local: Path) -> None:
    with api.download(vm, remote) as (kind, chunks):
        name = PurePosixPath(remote).name or "root"
        if kind == "dir":
            target = local / name if local.is_dir() else local
            _extract(chunks, name, target)
            return
        target = local / name if local.is_dir() else local
        if not target.parent.is_dir():
            raise NotFoundError(f"The folder {target.parent} does not exist on this host.")
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
            try:
                for chunk in chunks:
                    handle.write(chunk)
            except BaseException:
                os.unlink(handle.name)
                raise
        os.replace(handle.name, target)


def _extract(chunks: Iterator[bytes], top: str, target: Path) -> None:
    """Unpack a tar whose top entry is ``top`` so that it becomes ``target``."""
    if not target.parent.is_dir():
        raise NotFoundError(f"The folder {target.parent} does not exist on this host.")
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".bungalow-cp-"))
    try:
        with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as tar:  # type: ignore[call-overload]
            tar.extractall(staging, filter="data")
        unpacked = staging / top
        if target.exists():
            shutil.copytree(unpacked, target, dirs_exist_ok=True, symlinks=True)
        else:
            unpacked.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
