"""The error hierarchy: its codes, statuses and tree, written out here so a change shows."""

from __future__ import annotations

import re

import pytest

from bungalow import errors

#: code -> (class name, parent class name, HTTP status): the wire contract with every client.
EXPECTED = {
    "error": ("BungalowError", "Exception", 500),
    "invalid_request": ("UserError", "BungalowError", 400),
    "invalid_name": ("InvalidNameError", "UserError", 400),
    "not_found": ("NotFoundError", "BungalowError", 404),
    "vm_not_found": ("VmNotFoundError", "NotFoundError", 404),
    "sandbox_gone": ("SandboxGoneError", "VmNotFoundError", 404),
    "snapshot_not_found": ("SnapshotNotFoundError", "NotFoundError", 404),
    "network_not_found": ("NetworkNotFoundError", "NotFoundError", 404),
    "file_not_found": ("GuestFileNotFoundError", "NotFoundError", 404),
    "conflict": ("ConflictError", "BungalowError", 409),
    "invalid_state": ("InvalidStateError", "BungalowError", 409),
    "snapshot_error": ("SnapshotError", "BungalowError", 409),
    "unauthorized": ("UnauthorizedError", "BungalowError", 401),
    "forbidden": ("ForbiddenError", "BungalowError", 403),
    "capacity": ("CapacityError", "BungalowError", 409),
    "image_error": ("ImageError", "BungalowError", 500),
    "qemu_error": ("QemuError", "BungalowError", 500),
    "agent_error": ("AgentError", "BungalowError", 502),
    "command_error": ("CommandError", "BungalowError", 500),
    "command_timeout": ("CommandTimeoutError", "CommandError", 500),
    "command_failed": ("CommandFailedError", "CommandError", 500),
    "daemon_error": ("DaemonError", "BungalowError", 503),
}


def test_the_registry_holds_exactly_the_expected_codes_and_classes() -> None:
    assert list(errors.ERROR_CLASSES) == list(EXPECTED)
    for code, (name, parent, status) in EXPECTED.items():
        cls = errors.ERROR_CLASSES[code]
        assert cls is getattr(errors, name)
        assert cls.code == code
        assert cls.__bases__ == (getattr(errors, parent, Exception),), name
        assert cls.http_status == status, name


def test_every_error_class_in_the_module_is_registered_once() -> None:
    defined = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.BungalowError)
    }
    registered = list(errors.ERROR_CLASSES.values())
    assert len(registered) == len(set(registered))
    assert set(registered) == defined


@pytest.mark.parametrize("code", list(EXPECTED))
def test_each_class_round_trips_through_its_code(code: str) -> None:
    rebuilt = errors.error_from_code(code, "It broke; fix it.")
    assert type(rebuilt).__name__ == EXPECTED[code][0]
    assert rebuilt.message == str(rebuilt) == "It broke; fix it."


def test_unknown_codes_fall_back_to_the_base_class() -> None:
    assert type(errors.error_from_code("nope", "x")) is errors.BungalowError


def test_a_reused_or_missing_code_is_refused_when_the_class_is_defined() -> None:
    before = dict(errors.ERROR_CLASSES)
    with pytest.raises(TypeError, match="VmNotFoundError"):

        class Twin(errors.BungalowError):
            code = "vm_not_found"

    with pytest.raises(TypeError, match="code of its own"):

        class Nameless(errors.NotFoundError):
            pass

    assert before == errors.ERROR_CLASSES


def test_a_status_alone_gives_the_broadest_class_that_answers_it() -> None:
    expected = {
        400: errors.UserError,
        401: errors.UnauthorizedError,
        403: errors.ForbiddenError,
        404: errors.NotFoundError,
        409: errors.ConflictError,
        500: errors.BungalowError,
        502: errors.AgentError,
        503: errors.DaemonError,
        507: errors.BungalowError,
        418: errors.BungalowError,
    }
    for status, cls in expected.items():
        error = errors.error_from_status(status, "Refused.")
        assert (type(error), error.message) == (cls, "Refused."), status


def test_a_command_timeout_is_not_an_agent_failure() -> None:
    timeout = errors.CommandTimeoutError("The command ran past its timeout of 2s and was killed.")
    assert not isinstance(timeout, errors.AgentError)
    assert isinstance(timeout, errors.CommandError) and timeout.result is None
    assert not hasattr(errors, "ExecTimeoutError")


def test_the_tree_in_the_docstring_is_the_class_tree() -> None:
    doc = errors.__doc__ or ""
    lines = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert lines[0].strip() == "BungalowError"
    indent = len(lines[0]) - len(lines[0].lstrip())
    drawn: dict[str, str] = {}
    path = ["BungalowError"]
    for line in lines[1:]:
        match = re.search(r"[├└]── (\w+)", line)
        assert match, line
        depth = (match.start() - indent) // 4 + 1
        path[depth:] = [match.group(1)]
        drawn[match.group(1)] = path[depth - 1]
    actual = {
        cls.__name__: cls.__bases__[0].__name__
        for cls in errors.ERROR_CLASSES.values()
        if cls is not errors.BungalowError
    }
    assert drawn == actual
