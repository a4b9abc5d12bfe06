"""Routes that reach inside a guest: exec, files, console and logs.

Exec output leaves as NDJSON events (one JSON object a line, bytes in base64) so
that it streams through any HTTP client; interactive sessions (stdin, a tty, the
serial console) use websockets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import ValidationError

from bungalow.daemon.api import transfer
from bungalow.daemon.api.deps import Svc
from bungalow.daemon.api.refusals import refused_body
from bungalow.daemon.api.responses import BytesResponse, NdjsonResponse
from bungalow.daemon.api.schemas import ExecRequest, FileStat
from bungalow.daemon.api.schemas.fields import GuestPath
from bungalow.errors import BungalowError, InvalidStateError, UserError
from bungalow.guest.session import ExecEvent, ExecSession
from bungalow.qemu.argv import RunFiles

router = APIRouter(prefix="/v1/vms/{name}")


def event_json(event: ExecEvent) -> dict[str, Any]:
    if event.kind == "exit":
        return {
            "type": "exit",
            "exit_code": event.exit_code,
            "signal": event.signal,
            "timed_out": event.timed_out,
        }
    return {"type": event.kind, "data": base64.b64encode(event.data).decode()}


def error_json(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, BungalowError):
        return {"type": "error", "code": exc.code, "message": exc.message}
    return {"type": "error", "code": "error", "message": f"The command failed: {exc}."}


async def _start_exec(svc: Svc, name: str, body: ExecRequest) -> ExecSession:
    argv = body.resolved_argv()
    if not argv:
        raise UserError("No command given; pass the command after `--`.")
    agent = await svc.vms.agent(name, "run a command")
    return await agent.exec(
        argv,
        env=body.env or None,
        cwd=body.cwd,
        user=body.user,
        timeout=body.timeout,
        tty=body.tty,
        stdin=body.stdin is not None,
        rows=body.rows,
        cols=body.cols,
    )


@router.post("/exec", response_class=NdjsonResponse)
async def exec_command(name: str, body: ExecRequest, svc: Svc) -> NdjsonResponse:
    session = await _start_exec(svc, name, body)

    async def stream() -> AsyncIterator[bytes]:
        finished = False
        try:
            if body.stdin is not None:
                await session.write_stdin(base64.b64decode(body.stdin))
                await session.close_stdin()
            async for event in session.events():
                finished = finished or event.kind == "exit"
                yield (json.dumps(event_json(event)) + "\n").encode()
        except BungalowError as exc:
            yield (json.dumps(error_json(exc)) + "\n").encode()
        finally:
            if not finished:
                with contextlib.suppress(Exception):
                    await session.send_signal(signal.SIGKILL)

    return NdjsonResponse(stream())


@router.websocket("/exec/ws")
async def exec_interactive(websocket: WebSocket, name: str, svc: Svc) -> None:
    """First message: an ExecRequest; then binary frames are stdin, text frames control."""
    await websocket.accept()
    try:
        try:
            body = ExecRequest.model_validate(await websocket.receive_json())
        except ValidationError as exc:
            raise refused_body(exc.errors()) from None
        except ValueError as exc:
            raise UserError(f"The exec request is not valid ({exc}).") from None
        session = await _start_exec(svc, name, body)
    except BungalowError as exc:
        await websocket.send_json(error_json(exc))
        await websocket.close(code=4000 + exc.http_status % 1000)
        return
    pump = asyncio.create_task(_pump_stdin(websocket, session))
    finished = False
    try:
        async for event in session.events():
            finished = finished or event.kind == "exit"
            await websocket.send_json(event_json(event))
    except (WebSocketDisconnect, BungalowError) as exc:
        if isinstance(exc, BungalowError):
            with contextlib.suppress(Exception):
                await websocket.send_json(error_json(exc))
    finally:
        pump.cancel()
        if not finished:
            with contextlib.suppress(Exception):
                await session.send_signal(signal.SIGKILL)
        with contextlib.suppress(Exception):
            await websocket.close()


async def _pump_stdin(websocket: WebSocket, session: ExecSession) -> None:
    with contextlib.suppress(WebSocketDisconnect, BungalowError, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await session.write_stdin(message["bytes"])
                continue
            control = json.loads(message.get("text") or "{}")
            kind = control.get("type")
            if kind == "stdin_close":
                await session.close_stdin()
            elif kind == "resize":
                await session.resize(int(control["rows"]), int(control["cols"]))
            elif kind == "signal":
                await session.send_signal(int(control["signal"]))


@router.get("/files/stat", response_model_exclude_none=True)
async def stat_file(name: str, path: GuestPath, svc: Svc) -> FileStat:
    agent = await svc.vms.agent(name, "look at a file")
    result = await agent.stat(path)
    if result is None:
        return FileStat(exists=False)
    return FileStat(exists=True, type=result.kind, size=result.size, mode=result.mode)


@router.get("/files", response_class=BytesResponse)
async def download(name: str, path: GuestPath, svc: Svc) -> StreamingResponse:
    agent = await svc.vms.agent(name, "copy files")
    return await transfer.download(agent, name, path)


@router.put("/files", status_code=204)
async def upload_file(
    name: str,
    path: GuestPath,
    request: Request,
    svc: Svc,
    mode: Annotated[int, Query(ge=0, le=0o7777, description="permission bits")] = 0o644,
) -> None:
    agent = await svc.vms.agent(name, "copy files")
    await agent.write_file(path, transfer.body_chunks(request), mode=mode, mkdirs=True)


@router.put("/files/tar", status_code=204)
async def upload_tree(name: str, path: GuestPath, request: Request, svc: Svc) -> None:
    agent = await svc.vms.agent(name, "copy files")
    await transfer.extract_tar(agent, path, transfer.body_chunks(request))


@router.get("/logs", response_class=PlainTextResponse)
async def logs(name: str, svc: Svc, tail: int = 0) -> PlainTextResponse:
    path = RunFiles(svc.vms.run_dir(svc.vms.get(name))).console_log
    return PlainTextResponse(await asyncio.to_thread(_tail, path, tail))


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of ``path`` (all of it for 0); empty when there is none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else text


#: Started on the serial port the first time someone attaches: a root login there costs
#: nothing at boot, and only the owner of the daemon's socket can reach it.
_CONSOLE_LOGIN = (
    "pgrep -x agetty >/dev/null || setsid -f /sbin/agetty --autologin root --noclear "
    "--keep-baud 115200 ttyS0 vt220 </dev/null >/dev/null 2>&1"
)


async def _ensure_console_login(svc: Svc, name: str) -> None:
    """Put a login on the guest's serial console if none is there yet."""
    agent = await svc.vms.agent(name, "attach to the console")
    session = await agent.exec(["/bin/sh", "-c", _CONSOLE_LOGIN], timeout=10)
    async for _event in session.events():
        pass


@router.websocket("/console")
async def console(websocket: WebSocket, name: str, svc: Svc) -> None:
    """Bridge the serial console's socket to a websocket, bytes both ways."""
    await websocket.accept()
    try:
        path = RunFiles(svc.vms.run_dir(svc.vms.get(name))).console
        with contextlib.suppress(BungalowError):
            await _ensure_console_login(svc, name)
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            raise InvalidStateError(
                f"The VM {name} has no console now; start it with `bungalow start {name}`."
            ) from None
    except BungalowError as exc:
        await websocket.send_json(error_json(exc))
        await websocket.close(code=4000 + exc.http_status % 1000)
        return

    async def guest_to_client() -> None:
        while data := await reader.read(4096):
            await websocket.send_bytes(data)

    task = asyncio.create_task(guest_to_client())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes"):
                svc.vms.store.vms.touch_active(name, svc.vms.clock.now())
                writer.write(message["bytes"])
                await writer.drain()
    except (WebSocketDisconnect, OSError):
        pass
    finally:
        task.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await websocket.close()
