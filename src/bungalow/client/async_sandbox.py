"""``AsyncSandbox``: :class:`~bungalow.Sandbox` for asyncio code.

::

    from bungalow import AsyncSandbox

    async with AsyncSandbox(image="debian-12", timeout="10m") as sb:
        result = await sb.exec("python3 -c 'print(6*7)'")

Creating a VM takes seconds, which a constructor cannot await: ``AsyncSandbox(...)``
only checks and keeps its arguments, and the VM is created by ``async with`` or by
``await AsyncSandbox.create(...)``. Everything else mirrors the sync class.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Self, Unpack

from bungalow.client import results, sandbox_base
from bungalow.client.async_http import AsyncClient
from bungalow.client.results import Command, Duration, ExecChunk, ExecOptions, ExecResult
from bungalow.client.sandbox_base import DEFAULT_IMAGE, Home, SandboxBase, SandboxOptions
from bungalow.client.shapes import VmInfo
from bungalow.errors import VmNotFoundError

_Load = Callable[[AsyncClient], Awaitable[VmInfo]]


class AsyncExecStream(results.ExecStreamBase):
    """A running command's output as an async iterator of :class:`ExecChunk`.

    Once it is exhausted, ``result`` says how the command ended; a timeout (or a
    failure under ``check=True``) raises at the end, as in ``exec``. Leaving early
    (``await aclose()``, or ``async with``) kills the command.
    """

    def __init__(self, chunks: AsyncGenerator[ExecChunk, None], run: results.ExecRun) -> None:
        super().__init__(run)
        self._chunks = chunks

    def __aiter__(self) -> AsyncExecStream:
        return self

    async def __anext__(self) -> ExecChunk:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        await self._chunks.aclose()

    async def __aenter__(self) -> AsyncExecStream:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


class AsyncSandboxFiles:
    """``sandbox.files``: single files inside the sandbox, read and written whole."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sandbox = sandbox

    async def read(self, path: str) -> bytes:
        """The file's bytes; :class:`~bungalow.errors.GuestFileNotFoundError` if it is not there."""
        sandbox = self._sandbox
        with sandbox._guard() as name:
            async with sandbox._client.download(name, path, follow=True) as download:
                sandbox_base.require_file(name, path, download.kind)
                return b"".join([chunk async for chunk in download.chunks])

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (await self.read(path)).decode(encoding)

    async def write(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Create or replace the file (and its missing parent folders); text is UTF-8."""
        with self._sandbox._guard() as name:
            await self._sandbox._client.upload_file(
                name, path, sandbox_base.as_bytes(data), mode=mode
            )

    async def stat(self, path: str) -> sandbox_base.FileStat:
        with self._sandbox._guard() as name:
            return sandbox_base.file_stat(name, path, await self._sandbox._client.stat(name, path))

    async def exists(self, path: str) -> bool:
        with self._sandbox._guard() as name:
            return bool((await self._sandbox._client.stat(name, path)).get("exists"))


class AsyncSandbox(SandboxBase):
    """A VM of its own, created on ``async with`` (or ``create``) and deleted when closed.

    The arguments and errors are :class:`~bungalow.Sandbox`'s; ``client`` is an
    :class:`~bungalow.AsyncClient`, shared and left open.
    """

    files: AsyncSandboxFiles

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        home: Home = None,
        client: AsyncClient | None = None,
        **options: Unpack[SandboxOptions],
    ) -> None:
        body = sandbox_base.sandbox_body(image, options)
        self._setup(sandbox_base.pick_client(home, client, AsyncClient), owned=True)
        self._create: _Load = lambda client: client.create_sandbox(body)

    @classmethod
    async def create(
        cls,
        image: str = DEFAULT_IMAGE,
        *,
        home: Home = None,
        client: AsyncClient | None = None,
        **options: Unpack[SandboxOptions],
    ) -> Self:
        """Create the sandbox now; the caller closes it (``await sb.close()``)."""
        return await cls(image, home=home, client=client, **options)._start()

    @classmethod
    async def attach(
        cls, name: str, *, home: Home = None, owned: bool = True, client: AsyncClient | None = None
    ) -> Self:
        """Wrap the existing VM ``name``; closing deletes it unless ``owned=False``."""
        sandbox = cls.__new__(cls)
        sandbox._setup(sandbox_base.pick_client(home, client, AsyncClient), owned=owned)
        await sandbox._load(lambda client: client.get_vm(name))
        return sandbox

    def _setup(self, client: tuple[AsyncClient, bool], *, owned: bool) -> None:
        self._client, closes_client = client
        SandboxBase.__init__(self, owned=owned, closes_client=closes_client)
        self.files = AsyncSandboxFiles(self)

    async def _load(self, load: _Load) -> None:
        try:
            self._remember(await load(self._client))
        except BaseException:
            self._mark_closed()
            await self._release_client()
            raise

    async def _release_client(self) -> None:
        if self._closes_client:
            await self._client.aclose()

    async def _start(self) -> Self:
        if self._state is sandbox_base.SandboxState.NEW:
            await self._load(self._create)
        self._require_open()
        return self

    async def __aenter__(self) -> Self:
        return await self._start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- the VM --------------------------------------------------------------------------------

    async def info(self) -> VmInfo:
        """The daemon's current view of the VM; see :meth:`bungalow.Sandbox.info`."""
        with self._guard() as name:
            self._remember(await self._client.get_vm(name))
        return self._known()

    async def set_timeout(self, duration: Duration | None) -> float | None:
        """Delete the VM ``duration`` from now instead (None: never); the new ``expires_at``."""
        with self._guard() as name:
            self._remember(await self._client.lease_vm(name, sandbox_base.lease_seconds(duration)))
        return self.expires_at

    async def fork(self, n: int = 1) -> list[AsyncSandbox]:
        """``n`` (1 to 64) running copies of this machine as it is now, each a sandbox."""
        with self._guard() as name:
            children = await self._client.fork_vm(name, n)
        return [self._adopt(self._child_client(), info) for info in children]

    def _child_client(self) -> tuple[AsyncClient, bool]:
        """A fork's client: a new one when this sandbox made its own, else the shared one."""
        if self._closes_client:
            return AsyncClient(self._client.data, autostart=False), True
        return self._client, False

    @classmethod
    def _adopt(cls, client: tuple[AsyncClient, bool], info: VmInfo) -> AsyncSandbox:
        child = cls.__new__(cls)
        child._setup(client, owned=True)
        child._remember(info)
        return child

    async def close(self) -> None:
        """Let go of the sandbox, deleting its VM when owned; calling again does nothing."""
        await self._close(force=False)

    async def kill(self) -> None:
        """Delete the VM now, owned or not, and close; a VM already gone is fine."""
        await self._close(force=True)

    async def _close(self, *, force: bool) -> None:
        name = self._delete_on_close(force)
        try:
            if name is not None:
                with contextlib.suppress(VmNotFoundError):
                    await self._client.remove_vm(name)
        finally:
            await self._release_client()

    # -- commands ------------------------------------------------------------------------------

    async def exec(self, cmd: Command, **options: Unpack[ExecOptions]) -> ExecResult:
        """Run ``cmd`` to its end; see :meth:`bungalow.Sandbox.exec` for the keywords."""
        run = results.ExecRun(cmd, options, keep_output=True)
        async for _chunk in self._chunks(run):
            pass
        return run.result

    def exec_stream(self, cmd: Command, **options: Unpack[ExecOptions]) -> AsyncExecStream:
        """Run ``cmd`` and read its output as it comes (``async for``); no await needed."""
        run = results.ExecRun(cmd, options, keep_output=False)
        return AsyncExecStream(self._chunks(run), run)

    async def _chunks(self, run: results.ExecRun) -> AsyncGenerator[ExecChunk, None]:
        request = run.request
        with self._guard() as name:
            events = self._client.exec_events(
                name, request.argv, stdin=request.stdin, **request.options
            )
            async with contextlib.aclosing(events):
                async for event in events:
                    if (chunk := run.feed(event)) is not None:
                        yield chunk
        run.finish()
