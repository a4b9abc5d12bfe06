"""The host's end of the agent protocol: one AgentChannel per VM.

The channel connects to the Unix socket behind the VM's virtio-serial port
(QEMU's chardev) and multiplexes every exec and file transfer over it by
request id. One reader task owns the socket's input and hands each message
to the stream it belongs to. It never waits for a slow consumer: the agent
sends each stream at most one credit window ahead (see
:mod:`bungalow.guest.protocol`), so what queues here is bounded.

When the socket closes -- QEMU exited, the guest powered off -- every pending
operation fails with :class:`~bungalow.errors.AgentError` and :attr:`closed`
turns true; the daemon watches :meth:`AgentChannel.wait_closed`. A command's
timeout is not an error here: it is an exit event with ``timed_out`` set,
and the daemon decides what that means for its caller. The agent enforces
the timeout; should it not report the end (a guest that hangs), the session
gives up a little later by itself (:data:`~bungalow.guest.session.EXIT_SLACK`)
and reports the timeout all the same.

Every request either fits the agent's limits or is refused here with one
sentence before it is sent: an exec's arguments against the guest kernel's
(:data:`protocol.MAX_EXEC_ARGS`), any line against :data:`protocol.MAX_LINE`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import secrets
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bungalow.errors import AgentError, BungalowError, NotFoundError, UserError
from bungalow.guest import protocol
from bungalow.guest.session import EXIT_SLACK, ExecSession, Stream
from bungalow.units import format_size

#: How often connect() says hello until the agent answers; what is sent
#: before the guest opens its port may be lost, so connect keeps sending.
PING_INTERVAL = 0.05
#: Seconds :meth:`AgentChannel.close` lets what is still buffered go before dropping it.
#: Hellos sent every PING_INTERVAL to a guest that never opens its port fill the socket
#: (QEMU reads nothing while the port is closed), and a close that waited for them to
#: be flushed would never return: a launch then stayed ``starting`` for good.
CLOSE_FLUSH_TIMEOUT = 2.0

_LOST = "The connection to the guest agent was lost; the VM stopped or its agent died."
_CLOSED = "The agent channel was closed; connect a new one to reach the guest again."


@dataclass(frozen=True)
class PingResult:
    """What the agent says about itself."""

    version: str
    protocol: int
    uptime: float
    python: str


@dataclass(frozen=True)
class StatResult:
    """A path in the guest: kind is file, dir, link or other; mode the permission bits.

    ``target`` is a link's target (as written in the link); ``special`` names what an
    ``other`` is: character device, block device, FIFO or socket. A folder's ``fs`` is
    the file system it is on (ext4, tmpfs, proc...) and ``mounts`` the mounts below it,
    as (path relative to it, file system) pairs.
    """

    kind: str
    size: int
    mode: int
    mtime: float
    target: str | None = None
    special: str | None = None
    fs: str | None = None
    mounts: tuple[tuple[str, str], ...] = ()

    @property
    def is_file(self) -> bool:
        return self.kind == protocol.KIND_FILE

    @property
    def is_dir(self) -> bool:
        return self.kind == protocol.KIND_DIR


class AgentChannel:
    """A connection to one guest agent; safe for many concurrent operations."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
    ) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._streams: dict[int, Stream] = {}
        # Start far from any earlier host's ids: a stale message from a session
        # of a previous connection must not look like one of ours.
        self._ids = itertools.count(secrets.randbelow(1 << 40) + 1)
        self._closed = asyncio.Event()
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"agent-reader {path}")

    @classmethod
    async def connect(
        cls, socket_path: str | os.PathLike[str], *, timeout: float = 30.0
    ) -> AgentChannel:
        """Connect to the agent behind ``socket_path`` and wait until it answers a ping.

        Waits for the socket to appear (QEMU may still be starting) and for the
        guest to open its port (the guest may still be booting), saying hello
        every PING_INTERVAL. The hello also tells the agent that a new host is
        here, so it ends whatever an earlier connection left running.
        """
        path = os.fspath(socket_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        failure = (
            f"The guest agent did not answer on {path} within {timeout:g} s; "
            "check the VM's console log for boot errors."
        )
        try:
            async with asyncio.timeout_at(deadline):
                channel, info = await cls._connect_once(path)
        except TimeoutError:
            raise AgentError(failure) from None
        except OSError as exc:
            raise AgentError(
                f"Cannot connect to the guest agent at {path}: {exc.strerror}."
            ) from None
        if info.protocol != protocol.PROTOCOL_VERSION:
            await channel.close()
            raise AgentError(
                f"The guest agent speaks protocol {info.protocol}, not "
                f"{protocol.PROTOCOL_VERSION}; rebuild the image with this bungalow."
            )
        return channel

    @classmethod
    async def _connect_once(cls, path: str) -> tuple[AgentChannel, PingResult]:
        """Retry until one connection gets a pong; the caller bounds the time."""
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(path, limit=protocol.MAX_LINE)
            except (FileNotFoundError, ConnectionRefusedError):
                await asyncio.sleep(PING_INTERVAL)
                continue
            channel = cls(reader, writer, path)
            try:
                return channel, await channel._handshake()
            except AgentError:  # dropped before answering: that end was going away
                await channel.close()
            except BaseException:
                await channel.close()
                raise
            await asyncio.sleep(PING_INTERVAL)

    async def _handshake(self) -> PingResult:
        request_id = next(self._ids)
        stream = self._open(request_id)
        reply = asyncio.ensure_future(stream.next_message())
        try:
            while True:
                await self._send(protocol.request(protocol.OP_HELLO, request_id))
                done, _ = await asyncio.wait({reply}, timeout=PING_INTERVAL)
                if done:
                    return _ping_result(reply.result())
        finally:
            reply.cancel()
            self._forget(request_id)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Return once the connection is gone (the VM stopped, or close() was called)."""
        await self._closed.wait()

    async def close(self) -> None:
        """Close the connection; pending operations fail. The agent keeps running."""
        self._shut(AgentError(_CLOSED))
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task
        try:
            async with asyncio.timeout(CLOSE_FLUSH_TIMEOUT):
                await self._writer.wait_closed()
        except TimeoutError:
            # The other end stopped reading (QEMU does while the guest's port is closed: a
            # guest that never booted, or hung): what is still buffered will never go.
            self._writer.transport.abort()
        except OSError:
            pass

    def interrupt(self, error: BungalowError) -> None:
        """End every operation under way with ``error`` and tell the agent to drop them (it
        ends their commands and transfers); the connection stays for new operations.

        For a guest that stopped under them, such as one QEMU holds after a disk write
        failed: the cancels wait in the socket and the agent acts on them once it runs.
        """
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            if not stream.ended:
                self._send_nowait(protocol.request(protocol.OP_CANCEL, stream.id))
            stream.fail(error)

    async def __aenter__(self) -> AgentChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def ping(self) -> PingResult:
        return _ping_result(await self._call(protocol.OP_PING))

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        user: str | int | None = None,
        timeout: float | None = None,
        tty: bool = False,
        stdin: bool = False,
        rows: int | None = None,
        cols: int | None = None,
        kill_grace: float | None = None,
    ) -> ExecSession:
        """Start ``argv`` in the guest; returns once it runs (or could not be run).

        A missing program is not an exception: like a shell, the session then
        yields a stderr message and exit code 127. A bad cwd or user raises.
        ``env`` is added to a clean PATH/HOME/LANG/USER environment. With
        ``tty`` the command gets a pty as its controlling terminal: stdin is
        always that terminal, stderr arrives merged into stdout, and
        close_stdin() types Ctrl-D. Without ``tty`` stdin is /dev/null unless
        ``stdin`` is true. ``timeout`` ends the whole process group (SIGTERM,
        then SIGKILL after ``kill_grace`` seconds) and reports ``timed_out``;
        the session stops waiting for the agent EXIT_SLACK seconds after that.
        Arguments and environment beyond what a guest's kernel runs raise
        UserError (see :func:`check_exec_size`).
        """
        if isinstance(argv, str) or not argv:
            raise UserError("The command must be a non-empty list of arguments, not a string.")
        check_exec_size(argv, env or {})
        fields: dict[str, Any] = {"argv": list(argv), "tty": tty, "stdin": stdin}
        optional = {"env": env, "cwd": cwd, "user": user, "timeout": timeout}
        optional.update(rows=rows, cols=cols, kill_grace=kill_grace)
        fields.update((key, value) for key, value in optional.items() if value is not None)
        deadline = None
        if timeout is not None:
            grace = protocol.KILL_GRACE if kill_grace is None else kill_grace
            deadline = asyncio.get_running_loop().time() + timeout + grace + EXIT_SLACK
        request_id = next(self._ids)
        session = ExecSession(self._open(request_id), deadline=deadline)
        try:
            await self._send(protocol.request(protocol.OP_EXEC, request_id, **fields))
        except BaseException:
            self._forget(request_id)
            raise
        await session._started()
        return session

    async def stat(self, path: str, *, follow: bool = False) -> StatResult | None:
        """What ``path`` is in the guest, or None if it does not exist.

        A link is described itself unless ``follow``; followed, a dangling link does
        not exist.
        """
        try:
            reply = await self._call(protocol.OP_STAT, path=path, follow=follow)
        except NotFoundError:
            return None
        return StatResult(
            kind=reply["kind"],
            size=reply["size"],
            mode=reply["mode"],
            mtime=reply.get("mtime", 0.0),
            target=reply.get("target"),
            special=reply.get("special"),
            fs=reply.get("fs"),
            mounts=tuple((str(path), str(fs)) for path, fs in reply.get("mounts") or ()),
        )

    async def read_file(self, path: str) -> AsyncGenerator[bytes, None]:
        """The bytes of a guest file, in chunks; NotFoundError if it does not exist."""
        request_id = next(self._ids)
        stream = self._open(request_id)
        finished = False
        try:
            await self._send(protocol.request(protocol.OP_READ_FILE, request_id, path=path))
            while True:
                try:
                    message = await stream.next_message()
                except Exception:
                    finished = True
                    raise
                if message is None or message.get("type") == protocol.EV_EOF:
                    finished = True
                    return
                data = protocol.decode_data(message)
                stream.consumed(len(data))
                yield data
        finally:
            if not finished and not self.closed:
                stream.cancel()
            self._forget(request_id)

    async def write_file(
        self,
        path: str,
        chunks: AsyncIterable[bytes] | Iterable[bytes] | bytes,
        mode: int = 0o644,
        mkdirs: bool = True,
    ) -> None:
        """Write a guest file from ``chunks``; it appears whole, or not at all."""
        request_id = next(self._ids)
        stream = self._open(request_id)
        fields = {"path": path, "mode": mode, "mkdirs": mkdirs}
        try:
            await self._send(protocol.request(protocol.OP_WRITE_FILE, request_id, **fields))
            async for chunk in _aiter_chunks(chunks):
                if not await stream.send_data(protocol.OP_DATA, chunk):
                    break
            await self._send(protocol.request(protocol.OP_CLOSE, request_id))
            while (message := await stream.next_message()) is not None:
                if message.get("type") == protocol.EV_DONE:
                    return
            raise AgentError(_LOST)
        except BaseException:
            if not self.closed:
                stream.cancel()
            raise
        finally:
            self._forget(request_id)

    async def sync(
        self,
        *,
        time: float | None = None,
        hostname: str | None = None,
        machine_id: str | None = None,
        entropy: bytes | None = None,
        mac: str | None = None,
        nics: list[dict[str, str]] | None = None,
    ) -> list[str]:
        """Set the guest's wall clock and identity; returns what the agent changed.

        ``nics``: each NIC on a private network as ``nics.guest_nics`` (daemon/vms) makes
        it, its MAC and address set in the guest (see agent_identity.configure_nic).
        """
        fields: dict[str, Any] = {"time": time, "hostname": hostname}
        fields.update(machine_id=machine_id, mac=mac, nics=nics)
        if entropy is not None:
            fields["entropy"] = base64.b64encode(entropy).decode()
        reply = await self._call(protocol.OP_SYNC, **{k: v for k, v in fields.items() if v})
        return [str(item) for item in reply.get("changed", [])]

    async def shutdown(self) -> None:
        """Sync the guest's disks and power it off; returns when the agent agreed."""
        request_id = next(self._ids)
        stream = self._open(request_id)
        try:
            await self._send(protocol.request(protocol.OP_SHUTDOWN, request_id))
            await stream.next_message()
        except AgentError:
            if not self.closed:
                raise  # a guest powering off may close the socket before "ok" arrives
        finally:
            self._forget(request_id)

    async def _call(self, op: str, **fields: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        stream = self._open(request_id)
        try:
            await self._send(protocol.request(op, request_id, **fields))
            message = await stream.next_message()
        finally:
            self._forget(request_id)
        if message is None:
            raise AgentError(_LOST)
        return message

    def _open(self, request_id: int) -> Stream:
        if self.closed:
            raise AgentError(_CLOSED)
        stream = Stream(self, request_id)
        self._streams[request_id] = stream
        return stream

    def _forget(self, request_id: int) -> None:
        self._streams.pop(request_id, None)

    async def _send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise AgentError(_CLOSED)
        line = protocol.encode(message)
        if len(line) > protocol.MAX_LINE:
            raise UserError(
                f"The request to the guest agent takes {format_size(len(line))}, more than "
                f"the {format_size(protocol.MAX_LINE)} it reads in one message; pass large "
                "data on stdin or as a file instead."
            )
        try:
            self._writer.write(line)
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise AgentError(_LOST) from exc

    def _send_nowait(self, message: dict[str, Any]) -> None:
        """For small control messages, where waiting for the socket buys nothing."""
        if not self.closed and not self._writer.is_closing():
            self._writer.write(protocol.encode(message))

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    line = await self._reader.readline()
                except ValueError:
                    continue  # longer than any message: skipped
                if not line.endswith(b"\n"):
                    break  # end of stream
                try:
                    message = protocol.decode(line)
                except protocol.ProtocolError:
                    continue  # e.g. the tail of a line meant for a previous host
                stream = self._streams.get(message["id"])
                if stream is not None:
                    stream.feed(message)
                elif message.get("type") in (
                    protocol.EV_STDOUT,
                    protocol.EV_STDERR,
                    protocol.EV_DATA,
                ):
                    # Output nobody waits for (an earlier host's, or a cancelled
                    # stream's): tell the agent to stop it.
                    self._send_nowait(protocol.request(protocol.OP_CANCEL, message["id"]))
        except ConnectionError:
            pass
        finally:
            self._shut(AgentError(_LOST))

    def _shut(self, error: AgentError) -> None:
        if self.closed:
            return
        self._closed.set()
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.fail(error)
        self._writer.close()


def check_exec_size(argv: Sequence[str], env: dict[str, str]) -> None:
    """Refuse arguments and environment a guest's kernel would not run (execve's E2BIG).

    Counted as the kernel counts them: each string with its NUL and its pointer,
    against ARG_MAX (:data:`protocol.MAX_EXEC_ARGS`) for all of them together and
    MAX_ARG_STRLEN (:data:`protocol.MAX_EXEC_ARG`) for each one.
    """
    strings = [*argv, *(f"{key}={value}" for key, value in env.items())]
    total = 0
    for index, text in enumerate(strings):
        size = len(text.encode(errors="surrogateescape")) + 1
        if size > protocol.MAX_EXEC_ARG:
            what = f"argument {index + 1}" if index < len(argv) else "an environment variable"
            raise UserError(
                f"The command's {what} is {format_size(size)}; a guest's kernel takes at most "
                f"{format_size(protocol.MAX_EXEC_ARG)} in one argument (MAX_ARG_STRLEN), so "
                "pass it on stdin or in a file (bungalow cp) instead."
            )
        total += size + 8
    if total > protocol.MAX_EXEC_ARGS:
        raise UserError(
            f"The command's arguments and environment take {format_size(total)}; a guest's "
            f"kernel runs at most {format_size(protocol.MAX_EXEC_ARGS)} of them (ARG_MAX), so "
            "pass the data on stdin or in a file (bungalow cp) instead."
        )


def _ping_result(message: dict[str, Any] | None) -> PingResult:
    if message is None:
        raise AgentError(_LOST)
    return PingResult(
        version=str(message.get("version", "")),
        protocol=int(message.get("protocol", 0)),
        uptime=float(message.get("uptime", 0.0)),
        python=str(message.get("python", "")),
    )


async def _aiter_chunks(
    chunks: AsyncIterable[bytes] | Iterable[bytes] | bytes,
) -> AsyncIterator[bytes]:
    if isinstance(chunks, (bytes, bytearray, memoryview)):
        yield bytes(chunks)
    elif isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk
