"""bungalow: real virtual machines on your own Linux host.

The Python SDK is ``from bungalow import Sandbox, AsyncSandbox``; ``Client`` and
``AsyncClient`` speak the daemon's whole REST API, and a sandbox can be handed
one (``Sandbox(client=Client(transport=...))``). These classes load on first
use (module ``__getattr__``): the command line imports this package on every
command and must not pay for httpx. The errors are plain imports, as
:mod:`bungalow.errors` imports nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bungalow.errors import (
    AgentError,
    BungalowError,
    CapacityError,
    CommandError,
    CommandFailedError,
    CommandTimeoutError,
    ConflictError,
    DaemonError,
    ForbiddenError,
    GuestFileNotFoundError,
    ImageError,
    InvalidNameError,
    InvalidStateError,
    NetworkNotFoundError,
    NotFoundError,
    QemuError,
    SandboxGoneError,
    SnapshotError,
    SnapshotNotFoundError,
    UnauthorizedError,
    UserError,
    VmNotFoundError,
)

if TYPE_CHECKING:
    from bungalow.client.async_http import AsyncClient
    from bungalow.client.async_sandbox import AsyncExecStream, AsyncSandbox
    from bungalow.client.http import Client
    from bungalow.client.results import ExecChunk, ExecResult
    from bungalow.client.sandbox import ExecStream, Sandbox
    from bungalow.client.sandbox_base import FileStat

__version__ = "0.1.0"

#: Public name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "Sandbox": "bungalow.client.sandbox",
    "ExecStream": "bungalow.client.sandbox",
    "AsyncSandbox": "bungalow.client.async_sandbox",
    "AsyncExecStream": "bungalow.client.async_sandbox",
    "Client": "bungalow.client.http",
    "AsyncClient": "bungalow.client.async_http",
    "ExecResult": "bungalow.client.results",
    "ExecChunk": "bungalow.client.results",
    "FileStat": "bungalow.client.sandbox_base",
}

__all__ = [
    "AgentError",
    "AsyncClient",
    "AsyncExecStream",
    "AsyncSandbox",
    "BungalowError",
    "CapacityError",
    "Client",
    "CommandError",
    "CommandFailedError",
    "CommandTimeoutError",
    "ConflictError",
    "DaemonError",
    "ExecChunk",
    "ExecResult",
    "ExecStream",
    "FileStat",
    "ForbiddenError",
    "GuestFileNotFoundError",
    "ImageError",
    "InvalidNameError",
    "InvalidStateError",
    "NetworkNotFoundError",
    "NotFoundError",
    "QemuError",
    "Sandbox",
    "SandboxGoneError",
    "SnapshotError",
    "SnapshotNotFoundError",
    "UnauthorizedError",
    "UserError",
    "VmNotFoundError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bungalow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
