"""Talking to a running QEMU over QMP, with QEMU's own client library (``qemu.qmp``).

The library is asyncio-only, so this module is too: the daemon holds one
:class:`Monitor` per VM for as long as the VM runs. Library errors never leave
this module: each one becomes a :class:`~bungalow.errors.QemuError` sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, QMPClient, QMPError, Runstate

from bungalow.errors import QemuError

CONNECT_TIMEOUT = 5.0
#: Seconds any QMP command may take; every command bungalow sends answers in milliseconds.
COMMAND_TIMEOUT = 30.0
RETRY_INTERVAL = 0.05
EVENT_POLL_INTERVAL = 0.2

# qemu.qmp logs every dropped connection at ERROR level; a VM that powers off is
# not an error to us, and a user's console is not the place for QMP internals.
logging.getLogger("qemu.qmp").propagate = False


@dataclass(frozen=True)
class Event:
    """One QMP event: ``SHUTDOWN``, ``STOP``, ``RESUME``, ``GUEST_PANICKED``, ..."""

    name: str
    data: Mapping[str, object] = field(default_factory=dict)
    timestamp: float = 0.0


class Monitor:
    """An open QMP session with one QEMU; build it with :meth:`connect`.

    Events are queued from the moment of connection, so none is lost between
    connecting and iterating :meth:`events`. QEMU serves one QMP client at a time
    on a socket (a second one waits until the first hangs up), so a VM has one
    Monitor, held by the daemon.
    """

    def __init__(self, client: QMPClient, qmp_path: Path) -> None:
        self._client = client
        self._path = qmp_path

    @classmethod
    async def connect(cls, qmp_path: Path, timeout: float = CONNECT_TIMEOUT) -> Monitor:
        """Connect, retrying while QEMU is still creating its socket, for up to ``timeout`` s."""
        client = QMPClient(f"bungalow:{qmp_path.parent.name}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                await asyncio.wait_for(
                    client.connect(str(qmp_path)), max(deadline - time.monotonic(), 0.01)
                )
                return cls(client, qmp_path)
            except TimeoutError:
                raise QemuError(
                    f"QEMU's monitor at {qmp_path} did not answer within {timeout:g} s; another "
                    "client may hold it, or QEMU is hung (stop the VM if it stays so)."
                ) from None
            except ConnectError as error:
                if time.monotonic() + RETRY_INTERVAL >= deadline:
                    raise QemuError(
                        f"Could not reach QEMU's monitor at {qmp_path} within {timeout:g} s "
                        f"({error.exc}); the VM has probably exited, see its qemu.err."
                    ) from None
            await asyncio.sleep(RETRY_INTERVAL)

    @property
    def connected(self) -> bool:
        return self._client.runstate == Runstate.RUNNING

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, object] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> object:
        """Run a QMP command and return its result; QEMU's refusal becomes a QemuError.

        A QEMU whose main loop is stuck never answers; after ``timeout`` seconds
        that is an error rather than a daemon waiting forever.
        """
        try:
            return await asyncio.wait_for(self._client.execute(command, arguments), timeout)
        except TimeoutError:
            raise QemuError(
                f"QEMU did not answer {command} within {timeout:g} s; it may be hung "
                "(remove or restart the VM if it stays so)."
            ) from None
        except ExecuteError as error:
            raise QemuError(f"QEMU refused {command}: {str(error).rstrip('.')}.") from None
        except (ExecInterruptedError, QMPError, EOFError, OSError):
            raise QemuError(
                f"The connection to QEMU's monitor closed during {command}; the VM has "
                "probably exited, see its qemu.err."
            ) from None

    async def status(self) -> str:
        """QEMU's run state: ``running``, ``paused``, ``shutdown``, ``inmigrate``, ..."""
        result = await self.execute("query-status")
        status = result.get("status") if isinstance(result, dict) else None
        if not isinstance(status, str):
            raise QemuError(f"QEMU answered query-status with {result!r}; upgrade QEMU.")
        return status

    async def stop(self) -> None:
        """Pause the vCPUs; memory and devices stay as they are."""
        await self.execute("stop")

    async def cont(self) -> None:
        await self.execute("cont")

    async def pass_fd(self, fd: int, name: str) -> None:
        """Hand QEMU an open file descriptor, known to later commands as ``name``."""
        try:
            self._client.send_fd_scm(fd)
        except (QMPError, OSError) as error:
            raise QemuError(f"Could not pass a file to QEMU ({error}); is it running?") from None
        await self.execute("getfd", {"fdname": name})

    async def add_fd(self, fd: int, opaque: str = "") -> int:
        """Hand QEMU an open file descriptor in a new fd set; returns the set's id, which
        commands taking a file name reach as ``/dev/fdset/ID`` (what a QEMU changed into its
        run directory needs; the access mode must be the one QEMU opens with). ``opaque``
        labels the set in ``query-fdsets``. Release it with :meth:`remove_fd`."""
        try:
            self._client.send_fd_scm(fd)
        except (QMPError, OSError) as error:
            raise QemuError(f"Could not pass a file to QEMU ({error}); is it running?") from None
        result = await self.execute("add-fd", {"opaque": opaque} if opaque else None)
        fdset = result.get("fdset-id") if isinstance(result, dict) else None
        if not isinstance(fdset, int):
            raise QemuError(f"QEMU answered add-fd with {result!r}; upgrade QEMU.")
        return fdset

    async def remove_fd(self, fdset: int) -> None:
        """Let go of an fdset; QEMU closes its descriptors once no device uses them."""
        await self.execute("remove-fd", {"fdset-id": fdset})

    async def eject(self, device: str) -> None:
        """Open the tray of the removable drive ``device`` (its qdev id) and take the medium
        out, even if the guest has locked the tray."""
        await self.execute("eject", {"id": device, "force": True})

    async def change_medium(self, device: str, filename: str) -> None:
        """Put the raw image ``filename`` (``/dev/fdset/N`` for a passed descriptor) read-only
        into the removable drive ``device``, replacing its medium and closing its tray."""
        await self.execute(
            "blockdev-change-medium",
            {"id": device, "filename": filename, "format": "raw", "read-only-mode": "read-only"},
        )

    async def medium(self, device: str) -> str | None:
        """The file in the removable drive ``device`` (its qdev id), None when it has none
        (``query-block``'s ``inserted``)."""
        result = await self.execute("query-block")
        for block in result if isinstance(result, list) else ():
            if isinstance(block, dict) and str(block.get("qdev", "")).endswith(device):
                inserted = block.get("inserted")
                return str(inserted.get("file")) if isinstance(inserted, dict) else None
        raise QemuError(f"QEMU has no drive {device}; the VM was started without one.")

    async def powerdown(self) -> None:
        """Press the ACPI power button; the guest decides whether and when to power off."""
        await self.execute("system_powerdown")

    async def quit(self) -> None:
        """Make QEMU exit now; QEMU may hang up before it answers, which is success too."""
        with contextlib.suppress(QemuError):
            await self.execute("quit")

    async def events(self) -> AsyncIterator[Event]:
        """Every event since connecting, in order; ends when QEMU hangs up.

        qemu.qmp announces a hang-up only as a momentary runstate change, which a
        waiter that starts a moment late misses forever, so the runstate is
        looked at again every :data:`EVENT_POLL_INTERVAL` instead.
        """
        listener = self._client.events
        while True:
            if listener.empty() and self._client.runstate != Runstate.RUNNING:
                return
            try:
                message = await asyncio.wait_for(listener.get(), EVENT_POLL_INTERVAL)
            except TimeoutError:
                continue
            yield _event(message)

    async def close(self) -> None:
        """Hang up; a connection that QEMU already closed is not an error."""
        with contextlib.suppress(QMPError, EOFError, OSError):
            await self._client.disconnect()

    async def __aenter__(self) -> Monitor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _event(message: Mapping[str, object]) -> Event:
    data = message.get("data")
    stamp = message.get("timestamp")
    timestamp = 0.0
    if isinstance(stamp, dict):
        timestamp = float(stamp.get("seconds", 0)) + float(stamp.get("microseconds", 0)) / 1e6
    return Event(
        name=str(message.get("event")),
        data=dict(data) if isinstance(data, dict) else {},
        timestamp=timestamp,
    )
