"""What :class:`~bungalow.Sandbox` and :class:`~bungalow.AsyncSandbox` share.

The two differ only in whether they wait with ``await``; the state they keep
between calls, the arguments they send and the errors they raise are the same
and live here, once.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from bungalow.client.results import Duration, check_keywords, to_seconds
from bungalow.client.shapes import FileStatInfo, VmInfo
from bungalow.errors import (
    GuestFileNotFoundError,
    InvalidStateError,
    SandboxGoneError,
    UserError,
    VmNotFoundError,
)
from bungalow.paths import DataDir

#: Where the daemon keeps its data: a path, a DataDir, or None for ``$BUNGALOW_HOME``.
Home = str | os.PathLike[str] | DataDir | None

DEFAULT_IMAGE = "debian-12"
DEFAULT_CPUS = 1
DEFAULT_MEMORY = "512M"
#: A sandbox nobody deletes is deleted by the daemon after this long.
DEFAULT_TIMEOUT = "10m"


class SandboxOptions(TypedDict, total=False):
    """The keywords of ``Sandbox(...)``; all optional, defaults above."""

    cpus: int
    memory: str | int
    disk: str | int | None
    timeout: Duration | None
    name: str | None
    warm: bool
    network: str | None


C = TypeVar("C")


def resolve_home(home: Home) -> DataDir:
    if home is None:
        return DataDir.from_env()
    if isinstance(home, DataDir):
        return home
    return DataDir(Path(home).absolute())


def pick_client(home: Home, client: C | None, make: Callable[[DataDir], C]) -> tuple[C, bool]:
    """The client a sandbox talks through, and whether the sandbox closes it.

    A client given is shared and left open (the caller closes it); else the
    sandbox makes one for ``home`` and closes it with itself.
    """
    if client is None:
        return make(resolve_home(home)), True
    if home is not None:
        raise TypeError("Give a sandbox either home or client, not both; a client has its home.")
    return client, False


def lease_seconds(duration: Duration | None) -> float | None:
    """A sandbox timeout in seconds, None for none (the daemon keeps it until deleted)."""
    return None if duration is None else to_seconds(duration, what="sandbox timeout")


def sandbox_body(image: str, options: SandboxOptions) -> dict[str, Any]:
    """The body of ``POST /v1/sandboxes``, checked before any daemon is reached."""
    check_keywords("Sandbox()", options, SandboxOptions.__optional_keys__)
    return {
        "image": image,
        "cpus": options.get("cpus", DEFAULT_CPUS),
        "memory": options.get("memory", DEFAULT_MEMORY),
        "disk": options.get("disk"),
        "timeout": lease_seconds(options.get("timeout", DEFAULT_TIMEOUT)),
        "name": options.get("name"),
        "warm": options.get("warm", True),
        **({"network": options["network"]} if options.get("network") else {}),
    }


@dataclass(frozen=True)
class FileStat:
    """A path inside the sandbox: ``type`` is file, dir, link or other."""

    path: str
    type: str
    size: int
    mode: int

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"


def file_stat(sandbox: str, path: str, raw: FileStatInfo) -> FileStat:
    if not raw.get("exists"):
        raise GuestFileNotFoundError(
            f"There is no {path} in the sandbox {sandbox}; check the path."
        )
    return FileStat(path=path, type=raw["type"], size=raw["size"], mode=raw["mode"])


def require_file(sandbox: str, path: str, kind: str) -> None:
    """Refuse to read a folder, which the daemon would send as a tar stream."""
    if kind != "file":
        raise UserError(
            f"{path} in the sandbox {sandbox} is a folder; read the files in it one by one."
        )


def as_bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


class SandboxState(enum.Enum):
    NEW = "new"  # an AsyncSandbox whose VM is not created yet
    OPEN = "open"
    CLOSED = "closed"  # deleted, or let go of by close(); no call reaches the daemon again


class SandboxBase:
    """The state a sandbox keeps between calls, and the guard every call passes.

    The guard refuses a call in the wrong state with one sentence and turns the
    daemon's ``vm_not_found`` for this sandbox into :class:`SandboxGoneError`, so
    callers catch "my sandbox is gone" whatever removed it.
    """

    def __init__(self, *, owned: bool, closes_client: bool) -> None:
        self._owned = owned
        self._closes_client = closes_client
        self._state = SandboxState.NEW
        self._info: VmInfo | None = None

    def _remember(self, info: VmInfo) -> None:
        self._info = info
        if self._state is SandboxState.NEW:
            self._state = SandboxState.OPEN

    @property
    def name(self) -> str:
        """The VM's name (``sb-...`` unless one was asked for)."""
        if self._info is None:
            raise InvalidStateError(
                "The sandbox is not created yet; use `async with AsyncSandbox(...)` "
                "or `await AsyncSandbox.create(...)`."
            )
        return self._info["name"]

    @property
    def owned(self) -> bool:
        """Whether closing this sandbox deletes its VM."""
        return self._owned

    @property
    def closed(self) -> bool:
        """Whether the sandbox was closed or killed: no call reaches the daemon any more."""
        return self._state is SandboxState.CLOSED

    @property
    def expires_at(self) -> float | None:
        """When the daemon deletes the VM (unix time), as of the last answer about it."""
        value = None if self._info is None else self._info["expires_at"]
        return None if value is None else float(value)

    def _known(self) -> VmInfo:
        """A copy of the daemon's last answer about the VM."""
        if self._info is None:
            raise InvalidStateError("The sandbox is not created yet; nothing is known of it.")
        return self._info.copy()

    def _mark_closed(self) -> bool:
        """Close this handle; False when it was closed already (closing twice is fine)."""
        was_open = self._state is not SandboxState.CLOSED
        self._state = SandboxState.CLOSED
        return was_open

    def _delete_on_close(self, force: bool) -> str | None:
        """The VM's name when closing now must delete it (``force``, or owned), else None."""
        created = self._state is SandboxState.OPEN
        if not self._mark_closed():
            return None
        return self.name if created and (force or self._owned) else None

    def _require_open(self) -> str:
        name = self.name
        if self._state is SandboxState.CLOSED:
            raise SandboxGoneError(f"The sandbox {name} is closed; create a new one.")
        return name

    @contextmanager
    def _guard(self) -> Iterator[str]:
        """Yields the VM's name for one call to the daemon, mapping a vanished VM."""
        name = self._require_open()
        try:
            yield name
        except VmNotFoundError as exc:
            if isinstance(exc, SandboxGoneError):
                raise
            raise SandboxGoneError(
                f"The sandbox {name} is gone (deleted, or its timeout ran out); create a new one."
            ) from None

    def __repr__(self) -> str:
        label = "not created" if self._info is None else self._info["name"]
        return f"{type(self).__name__}({label!r}, {self._state.value})"
