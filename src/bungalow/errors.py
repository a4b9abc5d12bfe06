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
    │   ├── NetworkNotFoundError  no such network
    │   └── GuestFileNotFoundError  no such file or folder inside the guest
    ├── ConflictError             the name is taken, the port is in use (HTTP 409)
    ├── InvalidStateError         the VM is in the wrong state for this (HTTP 409)
    ├── SnapshotError             a snapshot is damaged or what it needs is gone (HTTP 409)
    ├── UnauthorizedError         the API token is not valid (HTTP 401)
    ├── ForbiddenError            this token may not do that (HTTP 403)
    ├── CapacityError             the host or project has no room for it (HTTP 409)
    ├── ImageError                building or importing an image failed (HTTP 500)
    ├── QemuError                 QEMU is missing, refused to start or died (HTTP 500)
    ├── AgentError                the guest agent did not answer or failed (HTTP 502)
    ├── CommandError              a command ran and ended badly; ``result`` says how (SDK)
    │   ├── CommandTimeoutError   it ran past its timeout and was killed
    │   └── CommandFailedError    it exited non-zero under ``check=True``
    └── DaemonError               bungalowd could not be reached or started (HTTP 503)

A refusal is a 4xx; a 5xx is bungalowd's own failure (or QEMU's, or the
agent's). Having no room is a refusal: :class:`CapacityError` is a 409 Conflict,
as OpenStack's Placement answers an allocation its providers have no inventory
left for. The request is well formed; what conflicts with it is the host's (or
the project's) current state, and it succeeds once something is stopped or
removed. Not 507, WebDAV's "cannot store the representation", nor a 503 that
clients retry as an outage. An answer with a 409 and no code is rebuilt as
:class:`ConflictError`, the broadest class of that status.

A user's command running out of time is not the agent failing: ``except
AgentError`` does not catch :class:`CommandTimeoutError`, as httpx keeps its
timeouts on a branch of their own.

Each class registers itself under its ``code`` when it is defined
(``__init_subclass__``); a class that reuses a code is refused there and then,
so :data:`ERROR_CLASSES` cannot go stale or silently map a code to the wrong class.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

# errors import nothing of bungalow: every layer, the daemon included, imports them.

#: Every error class by its ``code``, in the order the classes were defined.
ERROR_CLASSES: dict[str, type[BungalowError]] = {}


class BungalowError(Exception):
    """Base of every error bungalow raises on purpose."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        taken = ERROR_CLASSES.get(cls.code)
        if "code" not in cls.__dict__ or taken is not None:
            owner = f" (it is {taken.__name__}'s)" if taken is not None else ""
            raise TypeError(
                f"{cls.__name__} needs a code of its own; {cls.code!r} is taken{owner}."
            )
        ERROR_CLASSES[cls.code] = cls


ERROR_CLASSES[BungalowError.code] = BungalowError


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


class NetworkNotFoundError(NotFoundError):
    code = "network_not_found"


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
    http_status = 409


class ImageError(BungalowError):
    code = "image_error"
    http_status = 500


class QemuError(BungalowError):
    code = "qemu_error"
    http_status = 500


class AgentError(BungalowError):
    code = "agent_error"
    http_status = 502


class ExecResultLike(Protocol):
    """How a command ended, as a :class:`CommandError` carries it (the SDK's ``ExecResult``).

    ``exit_code`` is None when signal number ``signal`` ended it; ``stdout`` and
    ``stderr`` are the output decoded as UTF-8, ``*_bytes`` the output as it came.
    """

    @property
    def exit_code(self) -> int | None: ...
    @property
    def signal(self) -> int | None: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def stdout_bytes(self) -> bytes: ...
    @property
    def stderr_bytes(self) -> bytes: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...
    @property
    def ok(self) -> bool: ...


class CommandError(BungalowError):
    """A command ran in a VM and ended badly; ``result`` holds its status and output."""

    code = "command_error"

    def __init__(self, message: str, result: ExecResultLike | None = None) -> None:
        super().__init__(message)
        self.result = result


class CommandTimeoutError(CommandError):
    """``result`` holds what the command printed before its timeout killed it."""

    code = "command_timeout"


class CommandFailedError(CommandError):
    """``result`` holds the output and exit status of a command that did not exit 0."""

    code = "command_failed"


class DaemonError(BungalowError):
    code = "daemon_error"
    http_status = 503


def error_from_code(code: str, message: str) -> BungalowError:
    """Rebuild the exception a daemon reported, falling back to the base class."""
    return ERROR_CLASSES.get(code, BungalowError)(message)


def error_from_status(status: int, message: str) -> BungalowError:
    """The broadest error answered with HTTP ``status``, for an answer that named no code.

    The broadest is the first class defined with that status: 404 is
    :class:`NotFoundError`, 409 :class:`ConflictError`; an unknown status is the base class.
    """
    cls = next((c for c in ERROR_CLASSES.values() if c.http_status == status), BungalowError)
    return cls(message)
