"""How a command's events become a result or an error, and its exit status (pure code)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bungalow import (
    AgentError,
    CommandFailedError,
    CommandTimeoutError,
    ExecChunk,
    ExecResult,
    InvalidStateError,
    UserError,
)
from bungalow.client.results import ExecRequest, ExecRun, exit_status, timeout_sentence
from bungalow.client.shapes import ExecEvent, ExitEvent


def _exit(
    exit_code: int | None = 0, signal: int | None = None, timed_out: bool = False
) -> ExitEvent:
    return {"type": "exit", "exit_code": exit_code, "signal": signal, "timed_out": timed_out}


def _run(events: list[ExecEvent], *, keep_output: bool = True, **options: object) -> ExecRun:
    run = ExecRun("make test", options, keep_output=keep_output)
    for event in events:
        run.feed(event)
    return run


def test_exit_status_is_the_code_128_plus_the_signal_or_124_for_a_timeout() -> None:
    assert exit_status(_exit(0)) == 0
    assert exit_status(_exit(3)) == 3
    assert exit_status(_exit(None, signal=9)) == 137
    assert exit_status(_exit(None, signal=15)) == 143
    assert exit_status(_exit(None, signal=9, timed_out=True)) == 124
    assert exit_status({"type": "exit", "exit_code": 5}) == 5  # a key left out counts as unset


def test_the_timeout_sentence_is_the_same_for_every_path() -> None:
    assert timeout_sentence(2.0) == "The command ran past its timeout of 2s and was killed."
    assert timeout_sentence(1.5, "sleep 30") == (
        "The command `sleep 30` ran past its timeout of 1.5s and was killed."
    )


def test_output_is_handed_out_as_chunks_and_joined_into_the_result() -> None:
    run = ExecRun("make", {}, keep_output=True)
    assert run.feed({"type": "stdout", "data": b"caf\xc3"}) == ExecChunk("stdout", b"caf\xc3")
    assert run.feed({"type": "stdout", "data": b"\xa9\n"}) == ExecChunk("stdout", b"\xa9\n")
    assert run.feed({"type": "stderr", "data": b"warn\n"}) == ExecChunk("stderr", b"warn\n")
    assert run.feed(_exit(0)) is None
    result = run.finish()
    assert result == ExecResult(0, None, False, b"caf\xc3\xa9\n", b"warn\n")
    assert (result.stdout, result.stderr, result.ok) == ("café\n", "warn\n", True)
    assert run.result is result


def test_a_stream_keeps_no_output_in_its_result() -> None:
    run = _run([{"type": "stdout", "data": b"x"}, _exit(4)], keep_output=False)
    assert run.finish() == ExecResult(4)


def test_a_failure_is_a_result_unless_checked() -> None:
    events: list[ExecEvent] = [{"type": "stderr", "data": b"first\nno rule to make\n"}, _exit(2)]
    assert _run(events).finish().exit_code == 2
    with pytest.raises(CommandFailedError) as failure:
        _run(events, check=True).finish()
    assert failure.value.message == (
        "The command `make test` exited with status 2: no rule to make."
    )
    assert failure.value.result is not None and failure.value.result.exit_code == 2


def test_a_checked_command_killed_by_a_signal_says_which() -> None:
    with pytest.raises(CommandFailedError, match=r"was killed by signal 9\.$"):
        _run([_exit(None, signal=9)], check=True).finish()


def test_a_timeout_raises_with_the_partial_output_checked_or_not() -> None:
    events: list[ExecEvent] = [{"type": "stdout", "data": b"started\n"}]
    events.append(_exit(None, signal=9, timed_out=True))
    with pytest.raises(CommandTimeoutError) as timeout:
        _run(events, timeout="1.5s").finish()
    assert timeout.value.message == (
        "The command `make test` ran past its timeout of 1.5s and was killed."
    )
    assert timeout.value.result is not None and timeout.value.result.stdout == "started\n"
    assert not isinstance(timeout.value, AgentError)


def test_no_exit_event_is_an_agent_error_and_no_result_yet_is_a_state_error() -> None:
    run = _run([{"type": "stdout", "data": b"x"}])
    with pytest.raises(InvalidStateError, match="has not finished"):
        _ = run.result
    with pytest.raises(AgentError, match="without an exit status"):
        run.finish()


def test_the_request_is_normalised_before_anything_is_sent() -> None:
    request = ExecRequest.build(
        ["env"], {"env": {"A": "1"}, "timeout": timedelta(minutes=1), "stdin": "hi"}
    )
    assert request.argv == ["env"]
    assert request.stdin == b"hi"
    assert request.options == {"env": {"A": "1"}, "cwd": None, "user": None, "timeout": 60.0}
    assert ExecRequest.build("echo $HOME", {}).argv == ["/bin/sh", "-c", "echo $HOME"]
    assert ExecRequest.build("x" * 80, {}).shown == "x" * 57 + "..."


def test_unknown_keywords_and_empty_commands_are_refused() -> None:
    with pytest.raises(TypeError, match="timout"):
        ExecRequest.build("true", {"timout": 3})  # type: ignore[typeddict-unknown-key]
    with pytest.raises(UserError, match="empty"):
        ExecRequest.build([], {})
    with pytest.raises(UserError, match="duration"):
        ExecRequest.build("true", {"timeout": "soon"})
