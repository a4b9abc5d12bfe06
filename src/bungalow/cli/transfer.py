"""``bungalow cp``: files, folders and links both ways, by ``docker cp``'s rules.

Where a copy lands: a file onto an existing folder goes inside it, onto anything
else becomes that path; a folder onto an existing folder goes inside it (its
contents do, when the source ends in ``/.``), onto a new path becomes that path,
and onto a file is refused. A destination ending in ``/`` must be a folder.

What travels: a file's bytes as reading it gives them and its permission bits
(set-user-ID, set-group-ID and sticky are dropped on the way out to this host);
ownership goes to whoever receives (root in the guest, the user running
``bungalow`` here). A link given as the source is copied as a link unless
``-L`` is given or the path ends in ``/`` or ``/.``, which name what it points
to; links inside folders are always copied as links, dangling or not. Devices,
FIFOs and sockets given as the source are refused (reading one may never end);
inside a folder, FIFOs travel as FIFOs and devices are left out on this host.
Folders on /proc, /sys and the like are refused, and mounts of those inside a
folder come as empty folders: their files' sizes say nothing of their contents.
Folders travel as tar streams made and unpacked on the fly.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from bungalow.cli.tarpipe import CHUNK, ChunkReader, link_tar, tar_stream
from bungalow.client.http import Client
from bungalow.errors import NotFoundError, UserError

_REMOTE = re.compile(r"^([a-z0-9][a-z0-9-]*):(.*)$")
#: Permission bits that survive a copy out of a guest.
KEPT_MODE = 0o777
#: Member fields that make tarfile leave ownership to whoever unpacks (typeshed wants ints).
_FOLLOW_HINT = "-L copies what it points to"
_UNOWNED: dict[str, Any] = {"uid": None, "gid": None, "uname": None, "gname": None}


def split_remote(spec: str) -> tuple[str, str] | None:
    """``("web", "/var/www")`` for ``web:/var/www``; None for a local path."""
    match = _REMOTE.match(spec)
    if not match or spec.startswith(("/", ".")):
        return None
    return match.group(1), match.group(2) or "/root"


def copy(api: Client, source: str, dest: str, *, follow: bool = False) -> None:
    """Copy ``source`` to ``dest``, one of them ``VM:PATH``; ``follow`` is ``-L``."""
    src_remote, dest_remote = split_remote(source), split_remote(dest)
    if src_remote and dest_remote:
        raise UserError("Copying from one VM to another is not supported; copy via the host.")
    if dest_remote:
        upload(api, source, *dest_remote, follow=follow)
    elif src_remote:
        download(api, *src_remote, dest, follow=follow)
    else:
        raise UserError("Neither path names a VM; write one of them as VM:PATH, e.g. web:/tmp.")


def names_what_it_points_to(path: str) -> bool:
    """A path ending in ``/`` or ``/.`` names what a link there points to, not the link."""
    return path.endswith(("/", "/."))


def contents_only(path: str) -> bool:
    """A folder given as ``DIR/.`` has its contents copied, not itself."""
    return path.rstrip("/").endswith("/.")


def note(text: str) -> None:
    print(f"bungalow: {text}", file=sys.stderr)


# -- this host to a VM ---------------------------------------------------------------------------


def upload(api: Client, source: str, vm: str, remote: str, *, follow: bool) -> None:
    local = Path(source)
    name = os.path.basename(os.path.abspath(source))
    follow = follow or names_what_it_points_to(source)
    info = _local_stat(local, follow)
    target = api.stat(vm, remote, follow=True)
    into_dir = bool(target.get("exists")) and target.get("type") == "dir"
    inside = str(PurePosixPath(remote) / name) if into_dir else remote
    if stat.S_ISLNK(info.st_mode):
        link = os.readlink(local)
        parent, name = (remote, name) if into_dir else _split(remote)
        api.upload_tar(vm, parent, iter([link_tar(name, link, info.st_mtime)]))
        note(f"{source} is a link to {link}; copied the link ({_FOLLOW_HINT}).")
    elif stat.S_ISDIR(info.st_mode):
        folder = remote if contents_only(source) and into_dir else inside
        api.upload_tar(vm, folder, tar_stream(local))
    elif stat.S_ISREG(info.st_mode):
        if remote.endswith("/") and not into_dir:
            raise NotFoundError(f"There is no folder {remote} in the VM {vm}; create it first.")
        api.upload_file(vm, inside, _file_chunks(local), mode=stat.S_IMODE(info.st_mode))
    else:
        raise UserError(
            f"{source} is a {_special_name(info.st_mode)}, not a file, folder or link; "
            "bungalow cp does not read those (copy what reading it gives into a file first)."
        )


def _local_stat(local: Path, follow: bool) -> os.stat_result:
    """The source on this host (the link itself unless ``follow``); sentences for the rest."""
    try:
        return local.stat() if follow else local.lstat()
    except FileNotFoundError:
        if local.is_symlink():
            raise NotFoundError(
                f"{local} is a link to {os.readlink(local)}, which does not exist on this "
                "host; copy the link itself (without -L)."
            ) from None
        raise NotFoundError(f"There is no {local} on this host; check the path.") from None
    except PermissionError as exc:
        raise UserError(f"Reading {local} was refused: {exc.strerror}.") from None


def _split(remote: str) -> tuple[str, str]:
    path = PurePosixPath(remote)
    return str(path.parent), path.name


def _special_name(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    return "socket" if stat.S_ISSOCK(mode) else "special file"


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


# -- a VM to this host ---------------------------------------------------------------------------


def download(api: Client, vm: str, remote: str, dest: str, *, follow: bool) -> None:
    local = Path(dest)
    follow = follow or names_what_it_points_to(remote)
    name = PurePosixPath(remote).name or "root"
    with api.download(vm, remote, follow=follow) as got:
        into_dir = local.is_dir()
        target = local / name if into_dir else local
        if got.kind == "dir":
            folder = local if contents_only(remote) and into_dir else target
            _extract(got.chunks, folder, f"{vm}:{remote}")
        elif got.kind == "link":
            link = got.target or ""
            _place(target, lambda temp: os.symlink(link, temp))
            note(
                f"{vm}:{remote} is a link to {link}; copied the link (-L copies what it points to)."
            )
        else:
            if dest.endswith("/") and not into_dir:
                raise NotFoundError(f"There is no folder {dest} on this host; create it first.")
            mode = (got.mode if got.mode is not None else 0o644) & KEPT_MODE
            _place(target, lambda temp: _write(temp, got.chunks, mode))


def _write(path: str, chunks: Iterator[bytes], mode: int) -> None:
    with open(path, "xb") as handle:
        for chunk in chunks:
            handle.write(chunk)
        os.fchmod(handle.fileno(), mode)


def _place(target: Path, make: Callable[[str], None]) -> None:
    """Make a file or link with ``make(temp)`` beside ``target``, then put it in its place."""
    if not target.parent.is_dir():
        raise NotFoundError(f"The folder {target.parent} does not exist on this host.")
    if target.is_dir() and not target.is_symlink():
        raise UserError(f"{target} is a folder on this host; a file cannot replace it.")
    temp = str(target.parent / f".{target.name}.bungalow-{secrets.token_hex(4)}")
    try:
        make(temp)
        os.replace(temp, target)
    except BaseException:
        if os.path.lexists(temp):
            os.unlink(temp)
        raise


def _extract(chunks: Iterator[bytes], target: Path, source: str) -> None:
    """Unpack a tar of a folder's contents (``./...``) so that it becomes ``target``."""
    if not target.parent.is_dir():
        raise NotFoundError(f"The folder {target.parent} does not exist on this host.")
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} is a file on this host; a folder cannot be copied onto it.")
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".bungalow-cp-"))
    left_out: list[str] = []
    try:
        try:
            with tarfile.open(fileobj=ChunkReader(chunks), mode="r|") as tar:  # type: ignore[call-overload]
                tar.extractall(staging, filter=_guest_member(left_out))
        except tarfile.FilterError as exc:
            raise UserError(f"The copy of {source} was stopped: {exc}.") from None
        if target.exists():
            shutil.copytree(staging, target, dirs_exist_ok=True, symlinks=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if left_out:
        shown = ", ".join(left_out[:5]) + (", ..." if len(left_out) > 5 else "")
        note(f"left out {len(left_out)} device file(s) of {source}: {shown}.")


def _guest_member(
    left_out: list[str],
) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """tarfile's ``tar`` filter (nothing lands outside the folder) with Docker's modes.

    Permission bits are kept but for set-user-ID, set-group-ID and sticky, ownership goes
    to whoever unpacks, hard links must point inside, and device files are left out.
    """

    def keep(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        if member.ischr() or member.isblk():
            left_out.append(member.name.removeprefix("./"))
            return None
        if member.islnk():
            home = os.path.realpath(dest)
            points_to = os.path.realpath(os.path.join(dest, member.linkname))
            if os.path.commonpath([points_to, home]) != home:
                raise tarfile.LinkOutsideDestinationError(member, points_to)
        checked = tarfile.tar_filter(member, dest)
        mode: Any = None if member.issym() else member.mode & KEPT_MODE
        return checked.replace(deep=False, **_UNOWNED, mode=mode)

    return keep
