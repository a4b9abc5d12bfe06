"""``Sandbox``: a disposable VM to run code in, from synchronous Python.

::

    from bungalow import Sandbox

    with Sandbox(image="debian-12", timeout="10m") as sb:
        print(sb.exec("python3 -c 'print(6*7)'").stdout)

A sandbox is an ordinary VM of the daemon that it deletes by itself once its
timeout passes, so one that a crashed program never closed does not live on.
Leaving the ``with`` block deletes it at once, also when the block raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from typing import Self, Unpack

from bungalow.client import results, sandbox_base
from bungalow.client.http import Client
from bungalow.client.results import Command, Duration, ExecChunk, ExecOptions, ExecResult
from bungalow.client.sandbox_base import DEFAULT_IMAGE, Home, SandboxBase, SandboxOptions
from bungalow.client.shapes import VmInfo
from bungalow.errors import VmNotFoundError


class ExecStream(results.ExecStreamBase):
    """A running command's output, chunk by chunk, as an iterator of :class:`ExecChunk`.

    Once the iterator is exhausted, ``result`` says how the command ended; a
    command killed by its timeout raises :class:`~bungalow.errors.CommandTimeoutError`
    at the end instead, and so does a failure under ``check=True``. Leaving early
    (``close()``, or a ``with`` block) kills the command.
    """

    def __init__(self, chunks: Generator[ExecChunk, None, None], run: results.ExecRun) -> None:
        super().__init__(run)
        self._chunks = chunks

    def __iter__(self) -> ExecStream:
        return self

    def __next__(self) -> ExecChunk:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()

    def __enter__(self) -> ExecStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class SandboxFiles:
    """``sandbox.files``: single files inside the sandbox, read and written whole."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def read(self, path: str) -> bytes:
        """The file's bytes; :class:`~bungalow.errors.GuestFileNotFoundError` if it is not there."""
        sandbox = self._sandbox
        with (
            sandbox._guard() as name,
            sandbox._client.download(name, path, follow=True) as download,
        ):
            sandbox_base.require_file(name, path, download.kind)
            return b"".join(download.chunks)

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read(path).decode(encoding)

    def write(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Create or replace the file (and its missing parent folders); text is UTF-8."""
        with self._sandbox._guard() as name:
            self._sandbox._client.upload_file(
                name, path, iter((sandbox_base.as_bytes(data),)), mode=mode
            )

    def stat(self, path: str) -> sandbox_base.FileStat:
        with self._sandbox._guard() as name:
            return sandbox_base.file_stat(name, path, self._sandbox._client.stat(name, path))

    def exists(self, path: str) -> bool:
        with self._sandbox._guard() as name:
            return bool(self._sandbox._client.stat(name, path).get("exists"))


class Sandbox(SandboxBase):
    """A VM of its own, created when constructed and deleted when closed.

    ``Sandbox(image="debian-12", *, cpus=1, memory="512M", disk=None,
    timeout="10m", name=None, warm=True, network=None, home=None, client=None)``:

    - ``memory`` and ``disk`` are sizes: ``"512M"``, ``"2G"``, or an int of
      bytes; ``disk=None`` is 4G, or the image's size if that is larger;
    - ``timeout`` is how long the daemon keeps the VM without being told
      otherwise (``"90s"``, ``"10m"``, seconds, a timedelta; None: until deleted);
    - ``warm=False`` boots from cold instead of resuming the image's pre-booted snapshot;
    - ``network`` puts it on that private network (``bungalow network create``), with a
      NIC and a name of its own there, instead of user-mode networking;
    - ``home`` is the daemon's data directory (default ``$BUNGALOW_HOME``);
    - ``client`` a :class:`~bungalow.Client` to talk through instead (its data
      directory, token and transport; ``Client(transport=httpx.MockTransport(...))``
      in tests). The sandbox and its forks share it and leave it open.

    Raises :class:`~bungalow.errors.NotFoundError` for an image that does not
    exist, :class:`~bungalow.errors.CapacityError` when the host cannot hold
    the VM, :class:`~bungalow.errors.UserError` for a malformed size or
    duration, :class:`~bungalow.errors.DaemonError` when bungalowd cannot be
    reached or started, and ``TypeError`` for an unknown keyword.
    """

    files: SandboxFiles

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        home: Home = None,
        client: Client | None = None,
        **options: Unpack[SandboxOptions],
    ) -> None:
        body = sandbox_base.sandbox_body(image, options)
        self._open(
            sandbox_base.pick_client(home, client, Client),
            lambda client: client.create_sandbox(body),
            owned=True,
        )

    @classmethod
    def attach(
        cls, name: str, *, home: Home = None, owned: bool = True, client: Client | None = None
    ) -> Self:
        """Wrap the existing VM ``name``; closing deletes it unless ``owned=False``.

        ``home`` and ``client`` are the constructor's;
        :class:`~bungalow.errors.VmNotFoundError` if there is no such VM.
        """
        sandbox = cls.__new__(cls)
        sandbox._open(
            sandbox_base.pick_client(home, client, Client),
            lambda client: client.get_vm(name),
            owned=owned,
        )
        return sandbox

    def _open(
        self, client: tuple[Client, bool], load: Callable[[Client], VmInfo], *, owned: bool
    ) -> None:
        self._client, closes_client = client
        SandboxBase.__init__(self, owned=owned, closes_client=closes_client)
        self.files = SandboxFiles(self)
        try:
            self._remember(load(self._client))
        except BaseException:
            self._mark_closed()
            self._release_client()
            raise

    def _release_client(self) -> None:
        if self._closes_client:
            self._client.close()

    # -- the VM --------------------------------------------------------------------------------

    def info(self) -> VmInfo:
        """The daemon's current view of the VM: state, resources, ``expires_at``...

        See :class:`~bungalow.client.shapes.VmInfo` for the keys and their units.
        """
        with self._guard() as name:
            self._remember(self._client.get_vm(name))
        return self._known()

    def set_timeout(self, duration: Duration | None) -> float | None:
        """Delete the VM ``duration`` from now instead (``"5m"``, seconds, a timedelta;
        None: never); returns the new ``expires_at`` (unix time)."""
        with self._guard() as name:
            self._remember(self._client.lease_vm(name, sandbox_base.lease_seconds(duration)))
        return self.expires_at

    def fork(self, n: int = 1) -> list[Sandbox]:
        """``n`` running copies of this machine as it is now, each a sandbox of its own.

        ``n`` is 1 to 64 (:class:`~bungalow.errors.UserError` otherwise); the
        copies are owned, so closing each deletes its VM.
        """
        with self._guard() as name:
            children = self._client.fork_vm(name, n)
        return [self._adopt(self._child_client(), info) for info in children]

    def _child_client(self) -> tuple[Client, bool]:
        """A fork's client: a new one when this sandbox made its own, else the shared one."""
        if self._closes_client:
            return Client(self._client.data, autostart=False), True
        return self._client, False

    @classmethod
    def _adopt(cls, client: tuple[Client, bool], info: VmInfo) -> Sandbox:
        child = cls.__new__(cls)
        child._open(client, lambda _client: info, owned=True)
        return child

    def close(self) -> None:
        """Let go of the sandbox, deleting its VM when owned; calling again does nothing."""
        self._close(force=False)

    def kill(self) -> None:
        """Delete the VM now, owned or not, and close; a VM already gone is fine."""
        self._close(force=True)

    def _close(self, *, force: bool) -> None:
        name = self._delete_on_close(force)
        try:
            if name is not None:
                with contextlib.suppress(VmNotFoundError):
                    self._client.remove_vm(name)
        finally:
            self._release_client()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- commands ------------------------------------------------------------------------------

    def exec(self, cmd: Command, **options: Unpack[ExecOptions]) -> ExecResult:
        """Run ``cmd`` to its end and return its output and exit status.

        A string runs through ``/bin/sh -c``; a list runs as it is. Keywords:
        ``env``, ``cwd``, ``user``, ``timeout`` (the command is killed after it and
        :class:`~bungalow.errors.CommandTimeoutError` raised), ``stdin`` (bytes or
        text) and ``check`` (raise :class:`~bungalow.errors.CommandFailedError`
        when it does not exit 0).
        """
        run = results.ExecRun(cmd, options, keep_output=True)
        for _chunk in self._chunks(run):
            pass
        return run.result

    def exec_stream(self, cmd: Command, **options: Unpack[ExecOptions]) -> ExecStream:
        """Run ``cmd`` and read its output as it comes; the keywords are :meth:`exec`'s."""
        run = results.ExecRun(cmd, options, keep_output=False)
        return ExecStream(self._chunks(run), run)

    def _chunks(self, run: results.ExecRun) -> Generator[ExecChunk, None, None]:
        request = run.request
        with (
            self._guard() as name,
            contextlib.closing(
                self._client.exec_events(name, request.argv, stdin=request.stdin, **request.options)
            ) as events,
        ):
            for event in events:
                if (chunk := run.feed(event)) is not None:
                    yield chunk
        run.finish()
