"""Moving files and folders in and out of a guest.

Single files go through the agent's read and write operations; folders travel
as a tar stream through the guest's own ``tar``, so modes, links and empty
folders survive and nothing is held whole in memory. What a download is goes
in headers (:data:`KIND`: ``file``, ``dir`` or ``link``), so that the client
can place it by Docker's rules before reading a byte:

- a file: its bytes, as reading it gives them (a /proc or /sys file's size says
  nothing, so no length is promised), and its permission bits in :data:`MODE`;
- a folder: a tar of its contents (members ``./...``, the folder itself ``.``);
  mounts of pseudo file systems (/proc, /sys...) below it come as empty folders,
  and a folder on one is refused, since their files' sizes are not their contents;
- a link, unless asked to follow it: no body, its target in :data:`TARGET`
  (percent-encoded bytes).

Devices, FIFOs and sockets are refused with a sentence: reading one may never
end or may act on the device.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from urllib.parse import quote_from_bytes

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from bungalow.errors import AgentError, GuestFileNotFoundError, UserError
from bungalow.guest import protocol
from bungalow.guest.channel import AgentChannel, StatResult

KIND = "X-Bungalow-Kind"
MODE = "X-Bungalow-Mode"
TARGET = "X-Bungalow-Link-Target"


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def download(agent: AgentChannel, vm: str, path: str, *, follow: bool) -> Response:
    """The file, folder or link at ``path`` (see the module's docstring for the shapes).

    A link is followed with ``follow``, and always when ``path`` ends in ``/`` or
    ``/.`` (the kernel resolves those). GuestFileNotFoundError if nothing is there,
    UserError for a special file.
    """
    info = await agent.stat(path, follow=follow)
    if info is None:
        raise await _missing(agent, vm, path)
    if info.kind == "link":
        target = (info.target or "").encode(errors="surrogateescape")
        return Response(status_code=200, headers={KIND: "link", TARGET: quote_from_bytes(target)})
    if info.kind == "dir":
        if info.fs in protocol.PSEUDO_FS:
            raise UserError(
                f"{path} in the VM {vm} is on a {info.fs} file system, whose files' sizes say "
                "nothing of their contents; copy the files you need one by one."
            )
        return StreamingResponse(
            _tar_out(agent, path, info), media_type="application/x-tar", headers={KIND: "dir"}
        )
    if info.kind != "file":
        raise _special(info, path, f"the VM {vm}", vm)
    chunks = agent.read_file(path)
    first = await anext(chunks, b"")  # a file that cannot be read is an answer, not a cut stream
    return StreamingResponse(
        _chained(first, chunks),
        media_type="application/octet-stream",
        headers={KIND: "file", MODE: f"{info.mode:04o}"},
    )


async def _chained(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # a client that left: the agent stops reading


async def _missing(agent: AgentChannel, vm: str, path: str) -> GuestFileNotFoundError:
    """The sentence for a path that is not there: a dangling link says where it points."""
    link = await agent.stat(path)
    if link is not None and link.kind == "link":
        return GuestFileNotFoundError(
            f"{path} in the VM {vm} is a link to {link.target}, which does not exist there; "
            "copy the link itself (without -L)."
        )
    return GuestFileNotFoundError(f"There is no {path} in the VM {vm}; check the path.")


def _special(info: StatResult, path: str, where: str, vm: str) -> UserError:
    what = info.special or "special file"
    return UserError(
        f"{path} in {where} is a {what}, not a file, folder or link; bungalow cp does not "
        f"read those (to save what reading it gives: `bungalow exec {vm} -- head -c SIZE "
        f"{path} > FILE`)."
    )


async def _tar_out(agent: AgentChannel, path: str, info: StatResult) -> AsyncIterator[bytes]:
    """A tar of the folder's contents; mounts of pseudo file systems below it come empty."""
    skipped = [f"--exclude=./{below}/*" for below, fs in info.mounts if fs in protocol.PSEUDO_FS]
    argv = ["tar", "-C", path, "--anchored", *skipped, "-cf", "-", "."]
    session = await agent.exec(argv)
    errors = b""
    try:
        async for event in session.events():
            if event.kind == "stdout":
                yield event.data
            elif event.kind == "stderr":
                errors += event.data
            elif event.kind == "exit" and event.exit_code not in (0, None):
                raise AgentError(f"tar in the guest failed: {errors.decode().strip()}")
    finally:
        await session.cancel()  # nothing to do once tar has exited


async def check_upload(agent: AgentChannel, vm: str, path: str, *, folder: bool) -> None:
    """Refuse to put a folder onto a file, or anything onto a special file, at ``path``."""
    info = await agent.stat(path, follow=True)
    if info is None or info.kind == "dir":
        return
    if info.kind != "file":
        raise _special(info, path, f"the VM {vm}", vm)
    if folder:
        raise UserError(
            f"{path} in the VM {vm} is a file; a folder cannot be copied onto a file "
            "(name a folder, or a path that does not exist yet)."
        )


async def extract_tar(agent: AgentChannel, dest: str, chunks: AsyncIterable[bytes]) -> None:
    """Unpack a tar stream into the folder ``dest`` in the guest, creating it if needed.

    Files belong to the guest's root, as ``docker cp`` makes them, whoever owned them
    on the host; modes, links and times are the archive's.
    """
    script = 'mkdir -p -- "$1" && exec tar -C "$1" --no-same-owner -xf -'
    session = await agent.exec(["sh", "-c", script, "sh", dest], stdin=True)
    try:
        async for chunk in chunks:
            await session.write_stdin(chunk)
        await session.close_stdin()
        errors = b""
        async for event in session.events():
            if event.kind == "stderr":
                errors += event.data
            elif event.kind == "exit" and event.exit_code != 0:
                raise UserError(
                    f"Unpacking into {dest} in the VM failed: {errors.decode().strip()}; check "
                    "the path, and that what was sent is a tar archive."
                )
    finally:
        await session.cancel()
