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
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import ValidationError

from bungalow.daemon.api import bridge, transfer
from bungalow.daemon.api.deps import Svc
from bungalow.daemon.api.refusals import refused_body
from bungalow.daemon.api.responses import BytesResponse, NdjsonResponse
from bungalow.daemon.api.schemas import ExecRequest, FileStat
from bungalow.daemon.api.schemas.fields import GuestPath
from bungalow.daemon.vms import console_log
from bungalow.daemon.vms.firmware import check_firmware_log
from bungalow.errors import AgentError, BungalowError, InvalidStateError, UserError
from bungalow.guest.session import ExecEvent, ExecSession
from bungalow.qemu.argv import RunFiles

router = APIRouter(prefix="/v1/vms/{name}")

T = TypeVar("T")

#: Bytes of an interactive command's stdin the daemon holds while the command is not reading.
STDIN_BUFFER = 1 << 20


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
        try:
            if body.stdin is not None:
                await session.write_stdin(base64.b64decode(body.stdin))
                await session.close_stdin()
            async for event in session.events():
                yield (json.dumps(event_json(event)) + "\n").encode()
        except BungalowError as exc:
            yield (json.dumps(error_json(exc)) + "\n").encode()
        finally:
            await session.cancel()  # the client left before the end: end the command too

    return NdjsonResponse(stream())


@router.websocket("/exec/ws")
async def exec_interactive(websocket: WebSocket, name: str, svc: Svc) -> None:
    """First message: an ExecRequest; then binary frames are stdin, text frames control.

    The session lasts as long as both the command and the websocket: when the
    command ends its exit is sent and the websocket closed; when the websocket
    closes first (the client quit, died or lost its connection) the command is
    ended as a hung-up terminal's would be (see ``ExecSession.cancel``).
    """
    await websocket.accept()
    try:
        try:
            body = ExecRequest.model_validate(await websocket.receive_json())
        except ValidationError as exc:
            raise refused_body(exc.errors()) from None
        except ValueError as exc:
            raise UserError(f"The exec request is not valid ({exc}).") from None
        session = await _start_exec(svc, name, body)
    except WebSocketDisconnect:
        return  # the client left before asking for anything: nothing was started
    except BungalowError as exc:
        await _refuse(websocket, exc)
        return
    stdin = asyncio.create_task(_pump_stdin(websocket, session))
    output = asyncio.create_task(_pump_output(websocket, session))
    try:
        await asyncio.wait({stdin, output}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stdin.cancel()
        output.cancel()
        await session.cancel()  # nothing to do once the command has exited
        ended = await asyncio.gather(stdin, output, return_exceptions=True)
        if isinstance(ended[0], BungalowError):  # a bad frame from the client
            await _refuse(websocket, ended[0])
        with contextlib.suppress(Exception):
            await websocket.close()
    for outcome in ended:
        if isinstance(outcome, Exception) and not isinstance(outcome, BungalowError):
            raise outcome  # a bug: let the server log it


async def _refuse(websocket: WebSocket, exc: BungalowError) -> None:
    """Say why in an error frame, then close with 4000 + the error's HTTP status."""
    with contextlib.suppress(Exception):
        await websocket.send_json(error_json(exc))
        await websocket.close(code=4000 + exc.http_status % 1000)


async def _pump_output(websocket: WebSocket, session: ExecSession) -> None:
    """The command's output and its exit to the client; an error event if the guest fails."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        try:
            async for event in session.events():
                await websocket.send_json(event_json(event))
        except BungalowError as exc:
            await websocket.send_json(error_json(exc))


async def _pump_stdin(websocket: WebSocket, session: ExecSession) -> None:
    """The client's frames to the command, in order, until the client goes.

    Frames are read as they come, so that a client that leaves is noticed at once
    even while its command reads no stdin: up to STDIN_BUFFER bytes wait here for
    the command (past that, reading waits too). UserError for a bad control frame.
    """
    frames: asyncio.Queue[bytes | str] = asyncio.Queue()
    held = 0  # bytes received and not yet handed to the guest
    drained = asyncio.Event()

    async def feed() -> None:
        nonlocal held
        while True:
            frame = await frames.get()
            if isinstance(frame, bytes):
                with contextlib.suppress(AgentError):  # the output side reports a lost guest
                    await session.write_stdin(frame)
            else:
                await _control(session, frame)
            held -= len(frame)
            drained.set()

    feeder = asyncio.create_task(feed())
    try:
        while True:
            if held >= STDIN_BUFFER:
                drained.clear()
                await _first(drained.wait(), feeder)
            message = await _first(websocket.receive(), feeder)
            if message["type"] == "websocket.disconnect":
                return
            frame = message["bytes"] if message.get("bytes") is not None else message.get("text")
            held += len(frame or "")
            frames.put_nowait(frame or "")
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        feeder.cancel()


async def _first(awaitable: Awaitable[T], feeder: asyncio.Task[None]) -> T:
    """What ``awaitable`` gives, unless ``feeder`` fails first: then its error."""
    waiting = asyncio.ensure_future(awaitable)
    await asyncio.wait({waiting, feeder}, return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        waiting.cancel()
        feeder.result()  # it ended: that can only be by raising
    return waiting.result()


async def _control(session: ExecSession, text: str) -> None:
    """Act on one text frame: stdin_close, resize or signal."""
    try:
        control = json.loads(text)
        kind = control.get("type")
        if kind == "stdin_close":
            await session.close_stdin()
        elif kind == "resize":
            await session.resize(int(control["rows"]), int(control["cols"]))
        elif kind == "signal":
            await session.send_signal(int(control["signal"]))
        else:
            raise ValueError(f"unknown type {kind!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(
            f"The control frame {text[:80]!r} is not valid ({exc}); send stdin_close, "
            "resize with rows and cols, or signal with a number."
        ) from None


@router.get("/files/stat", response_model_exclude_none=True)
async def stat_file(name: str, path: GuestPath, svc: Svc, follow: bool = False) -> FileStat:
    agent = await svc.vms.agent(name, "look at a file")
    result = await agent.stat(path, follow=follow)
    if result is None:
        return FileStat(exists=False)
    return FileStat(exists=True, type=result.kind, size=result.size, mode=result.mode)


@router.get("/files", response_class=BytesResponse)
async def download(name: str, path: GuestPath, svc: Svc, follow: bool = False) -> Response:
    """A file's bytes, a folder's tar, or a link (see daemon/api/transfer.py)."""
    agent = await svc.vms.agent(name, "copy files")
    return await transfer.download(agent, name, path, follow=follow)


@router.put("/files", status_code=204)
async def upload_file(
    name: str,
    path: GuestPath,
    request: Request,
    svc: Svc,
    mode: Annotated[int, Query(ge=0, le=0o7777, description="permission bits")] = 0o644,
) -> None:
    agent = await svc.vms.agent(name, "copy files")
    await transfer.check_upload(agent, name, path, folder=False)
    await agent.write_file(path, transfer.body_chunks(request), mode=mode, mkdirs=True)


@router.put("/files/tar", status_code=204)
async def upload_tree(name: str, path: GuestPath, request: Request, svc: Svc) -> None:
    agent = await svc.vms.agent(name, "copy files")
    await transfer.check_upload(agent, name, path, folder=True)
    await transfer.extract_tar(agent, path, transfer.body_chunks(request))


@router.get("/logs", response_class=PlainTextResponse)
async def logs(
    name: str, svc: Svc, tail: int = 0, follow: bool = False, firmware: bool = False
) -> Response:
    """The console log (its last ``tail`` lines); with ``follow``, then its output as it
    comes, until the VM's QEMU ends (vms/console_log.py). With ``firmware``, a pc VM's
    firmware debug log instead (SeaBIOS's ``isa-debugcon``: "Booting from ..."), written
    afresh at each start."""
    vm = svc.vms.get(name)
    if firmware:
        check_firmware_log(vm)
    files = RunFiles(svc.vms.run_dir(vm))
    path = files.firmware_log if firmware else files.console_log
    if follow:
        lines = console_log.follow(path, tail, name=name, vms=svc.vms)
        return StreamingResponse(lines, media_type="text/plain")
    return PlainTextResponse(await asyncio.to_thread(_tail, path, tail))


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of ``path`` (all of it for 0); empty when there is none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else text


#: Started on the serial port the first time someone attaches: a root login there costs
#: nothing at boot, and only the owner of the daemon's socket can reach it. Only when no
#: process has the port as its terminal: agetty becomes ``login`` and then the shell, and a
#: second agetty would hang up the first one's session and orphan its login.
_CONSOLE_LOGIN = (
    "pgrep -t ttyS0 >/dev/null || setsid -f /sbin/agetty --autologin root --noclear "
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
        await _refuse(websocket, exc)
        return

    await bridge.carry(
        websocket, reader, writer, lambda: svc.vms.store.vms.touch_active(name, svc.vms.clock.now())
    )
