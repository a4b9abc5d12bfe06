"""Moving files and folders in and out of a guest.

Single files go through the agent's read and write operations; folders travel
as a tar stream through the guest's own ``tar``, so modes, links and empty
folders survive and nothing is held whole in memory.
"""

from __future__ import annotations

import contextlib
import posixpath
import signal
from collections.abc import AsyncIterable, AsyncIterator

from fastapi import Request
from fastapi.responses import StreamingResponse

from bungalow.errors import AgentError, GuestFileNotFoundError, UserError
from bungalow.guest.channel import AgentChannel


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def download(agent: AgentChannel, vm: str, path: str) -> StreamingResponse:
    info = await agent.stat(path)
    if info is None:
        raise GuestFileNotFoundError(f"There is no {path} in the VM {vm}; check the path.")
    if info.kind == "dir":
        return StreamingResponse(
            _tar_out(agent, path),
            media_type="application/x-tar",
            headers={"X-Bungalow-Kind": "dir"},
        )
    if info.kind != "file":
        raise UserError(f"{path} in the VM {vm} is not a regular file or folder.")
    return StreamingResponse(
        agent.read_file(path),
        media_type="application/octet-stream",
        headers={"X-Bungalow-Kind": "file", "Content-Length": str(info.size)},
    )


async def _tar_out(agent: AgentChannel, path: str) -> AsyncIterator[bytes]:
    clean = posixpath.normpath(path)
    parent, base = posixpath.split(clean)
    session = await agent.exec(["tar", "-C", parent or "/", "-cf", "-", base or "."])
    finished = False
    errors = b""
    try:
        async for event in session.events():
            if event.kind == "stdout":
                yield event.data
            elif event.kind == "stderr":
                errors += event.data
            elif event.kind == "exit":
                finished = True
                if event.exit_code not in (0, None):
                    raise AgentError(f"tar in the guest failed: {errors.decode().strip()}")
    finally:
        if not finished:
            with contextlib.suppress(Exception):
                await session.send_signal(signal.SIGKILL)


async def extract_tar(agent: AgentChannel, dest: str, chunks: AsyncIterable[bytes]) -> None:
    """Unpack a tar stream into the folder ``dest`` in the guest, creating it if needed."""
    session = await agent.exec(
        ["sh", "-c", 'mkdir -p -- "$1" && exec tar -C "$1" -xf -', "sh", dest], stdin=True
    )
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
    except BaseException:
        with contextlib.suppress(Exception):
            await session.send_signal(signal.SIGKILL)
        raise
