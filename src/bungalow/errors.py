"""The one exception hierarchy of bungalow.

Every error a user can cause is a :class:`BungalowError` whose message is one
sentence saying what is wrong and what to do. The daemon maps each class to an
HTTP status and a ``code`` string; the client maps them back, so the same class
is raised on both sides of the API. Classes marked SDK are raised by the
Python SDK (:mod:`bungalow.client`) on what the daemon answered::

    BungalowError
    ├── UserError                 the request itself is wrong (HTTP 400)
    │   └── InvalidNameError      a VM, image or snapshot name is malformed
    ├── NotFoundError             no such VM, image, file (HTTP 404)
    │   ├── VmNotFoundError       no such VM
    │   │   └── SandboxGoneError  the sandbox's VM was deleted or its timeout ran out (SDK)
    │   ├── SnapshotNotFoundError no such snapshot
    │   └── GuestFileNotFoundError  no such file or folder inside the guest
    ├── ConflictError             the name is taken, the port is in use (HTTP 409)
    ├── InvalidStateError         the VM is in the wrong state for this (HTTP 409)
    ├── SnapshotError             a snapshot is damaged or what it needs is gone (HTTP 409)
    ├── UnauthorizedError         the API token is not valid (HTTP 401)
    ├── ForbiddenError            this token may not do that (HTTP 403)
    ├── CapacityError             the host has not enough CPU, memory or disk (HTTP 507)
    ├── ImageError                building or importing an image failed (HTTP 500)
    ├── QemuError                 QEMU is missing, refused to start or died (HTTP 500)
    ├── AgentError                the guest agent did not answer or failed (HTTP 502)
    │   └── ExecTimeoutError      a command ran past its timeout and was killed (HTTP 504)
    │       └── CommandTimeoutError   the same, seen by the SDK, with the partial result
    ├── CommandFailedError        a command exited non-zero under ``check=True`` (SDK)
    └── DaemonError               bungalowd could not be reached or started (client side)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # errors import nothing of bungalow at run time: every layer imports them
    from bungalow.client.results import ExecResult


class BungalowError(Exception):
    """Base of every error bungalow raises on purpose."""

    code = "error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UserError(BungalowError):
    code = "invalid_request"
    http_status = 400


class InvalidNameError(UserError):
    code = "invalid_name"


class NotFoundError(BungalowError):
    code = "not_found"
    http_status = 404


class VmNotFoundError(NotFoundError):
    code = "vm_not_found"


class SandboxGoneError(VmNotFoundError):
    code = "sandbox_gone"


class SnapshotNotFoundError(NotFoundError):
    code = "snapshot_not_found"


class GuestFileNotFoundError(NotFoundError):
    code = "file_not_found"


class ConflictError(BungalowError):
    code = "conflict"
    http_status = 409


class InvalidStateError(BungalowError):
    code = "invalid_state"
    http_status = 409


class SnapshotError(BungalowError):
    code = "snapshot_error"
    http_status = 409


class UnauthorizedError(BungalowError):
    code = "unauthorized"
    http_status = 401


class ForbiddenError(BungalowError):
    code = "forbidden"
    http_status = 403


class CapacityError(BungalowError):
    code = "capacity"
    http_status = 507


class ImageError(BungalowError):
    code = "image_error"
    http_status = 500


class QemuError(BungalowError):
    code = "qemu_error"
    http_status = 500


class AgentError(BungalowError):
    code = "agent_error"
    http_status = 502


class ExecTimeoutError(AgentError):
    code = "exec_timeout"
    http_status = 504


class CommandTimeoutError(ExecTimeoutError):
    """``result`` holds what the command printed before it was killed."""

    code = "command_timeout"

    def __init__(self, message: str, result: ExecResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class CommandFailedError(BungalowError):
    """``result`` holds the command's output and exit status."""

    code = "command_failed"

    def __init__(self, message: str, result: ExecResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class DaemonError(BungalowError):
    code = "daemon_error"
    http_status = 503


ERROR_CLASSES: dict[str, type[BungalowError]] = {
    cls.code: cls
    for cls in (
        BungalowError,
        UserError,
        InvalidNameError,
        NotFoundError,
        VmNotFoundError,
        SandboxGoneError,
        SnapshotNotFoundError,
        GuestFileNotFoundError,
        ConflictError,
        SnapshotError,
        UnauthorizedError,
        ForbiddenError,
        InvalidStateError,
        CapacityError,
        ImageError,
        QemuError,
        AgentError,
        ExecTimeoutError,
        CommandTimeoutError,
        CommandFailedError,
        DaemonError,
    )
}


def error_from_code(code: str, message: str) -> BungalowError:
    """Rebuild the exception a daemon reported, falling back to the base class."""
    return ERROR_CLASSES.get(code, BungalowError)(message)
