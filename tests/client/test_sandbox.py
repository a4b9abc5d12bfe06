"""The sync SDK against a real daemon and real VMs.

Most tests attach to one ordinary VM (``box``) without owning it, so the module
boots few machines; the sandbox tests at the end create their own. What needs
no VM (argument checks, results, the state guard) is in test_results.py and
test_sandbox_offline.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bungalow import (
    AgentError,
    CommandError,
    CommandFailedError,
    CommandTimeoutError,
    GuestFileNotFoundError,
    InvalidStateError,
    Sandbox,
    SandboxGoneError,
    UserError,
    VmNotFoundError,
)
from bungalow.client.http import Client
from bungalow.paths import DataDir
from tests.client.conftest import clock_moved
from tests.support import wait_until

pytestmark = pytest.mark.vm


@pytest.fixture
def sb(home: DataDir, box: str) -> Iterator[Sandbox]:
    with Sandbox.attach(box, home=home, owned=False) as sandbox:
        yield sandbox


def _gone(client: Client, name: str) -> bool:
    try:
        client.get_vm(name)
    except VmNotFoundError:
        return True
    return False


# -- commands ------------------------------------------------------------------------------------


def test_exec_runs_a_shell_string_and_returns_its_output(sb: Sandbox) -> None:
    result = sb.exec("python3 -c 'print(6*7)'")
    assert result.stdout == "42\n"
    assert result.stdout_bytes == b"42\n"
    assert result.stderr == ""
    assert (result.exit_code, result.signal, result.timed_out, result.ok) == (0, None, False, True)


def test_exec_takes_argv_env_cwd_user_and_stdin(sb: Sandbox) -> None:
    result = sb.exec(
        ["sh", "-c", 'echo "$GREETING $(pwd) $(id -un)"; tr a-z A-Z'],
        env={"GREETING": "hi"},
        cwd="/tmp",
        user="nobody",
        stdin="piped\n",
    )
    assert result.stdout == "hi /tmp nobody\nPIPED\n"


def test_output_that_is_not_utf8_is_replaced_in_text_and_kept_in_bytes(sb: Sandbox) -> None:
    result = sb.exec(["printf", r"\377ok"])
    assert result.stdout_bytes == b"\xffok"
    assert result.stdout == "\ufffdok"


def test_a_failing_command_is_a_result_unless_checked(sb: Sandbox) -> None:
    result = sb.exec("echo oops >&2; exit 3")
    assert (result.exit_code, result.ok, result.stderr) == (3, False, "oops\n")
    with pytest.raises(CommandFailedError) as failure:
        sb.exec("echo oops >&2; exit 3", check=True)
    assert "status 3" in failure.value.message and "oops" in failure.value.message
    assert failure.value.result is not None and failure.value.result.exit_code == 3


def test_exec_timeout_kills_the_command_and_keeps_its_partial_output(sb: Sandbox) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError) as timeout:
        sb.exec("echo started; sleep 30; echo never", timeout=2)
    assert time.monotonic() - started < 20
    assert isinstance(timeout.value, CommandError)
    assert not isinstance(timeout.value, AgentError)
    assert "timeout of 2s" in timeout.value.message
    result = timeout.value.result
    assert result is not None and result.timed_out and result.stdout == "started\n"
    assert sb.exec("pgrep -x sleep || true").stdout == ""


def test_exec_stream_yields_output_as_it_comes_then_the_result(sb: Sandbox) -> None:
    stream = sb.exec_stream("echo first; sleep 3; echo second >&2; exit 4")
    with pytest.raises(InvalidStateError):
        _ = stream.result
    started = time.monotonic()
    arrivals = [(chunk.stream, chunk.text, time.monotonic() - started) for chunk in stream]
    assert [(where, text) for where, text, _ in arrivals] == [
        ("stdout", "first\n"),
        ("stderr", "second\n"),
    ]
    assert arrivals[1][2] - arrivals[0][2] > 2, "the first line arrived only at the end"
    assert stream.result.exit_code == 4
    assert stream.result.stdout_bytes == b"", "a stream hands its output out and keeps none"


def test_leaving_a_stream_early_kills_the_command(sb: Sandbox) -> None:
    with sb.exec_stream("echo ready; exec sleep 600") as stream:
        assert next(stream).text == "ready\n"
    wait_until("the command's end", lambda: sb.exec("pgrep -x sleep || true").stdout == "", 20)


def test_a_stream_past_its_timeout_raises_at_its_end(sb: Sandbox) -> None:
    stream = sb.exec_stream("echo started; sleep 30", timeout=1)
    texts = []
    with pytest.raises(CommandTimeoutError):
        for chunk in stream:
            texts.append(chunk.text)
    assert texts == ["started\n"]
    assert stream.result.timed_out


# -- files ---------------------------------------------------------------------------------------


def test_files_round_trip_bytes_and_text(sb: Sandbox) -> None:
    every_byte = bytes(range(256)) * 64
    sb.files.write("/tmp/sdk/nested/data.bin", every_byte, mode=0o600)
    assert sb.files.read("/tmp/sdk/nested/data.bin") == every_byte
    sb.files.write("/tmp/sdk/in.json", '{"answer": 42}')
    assert sb.files.read_text("/tmp/sdk/in.json") == '{"answer": 42}'
    assert sb.exec("cat /tmp/sdk/in.json").stdout == '{"answer": 42}'
    info = sb.files.stat("/tmp/sdk/nested/data.bin")
    assert (info.is_file, info.size, info.mode & 0o777) == (True, len(every_byte), 0o600)
    assert sb.files.stat("/tmp/sdk").is_dir
    assert sb.files.exists("/tmp/sdk/in.json")
    assert not sb.files.exists("/tmp/sdk/nope")


def test_missing_files_and_folders_raise_typed_errors(sb: Sandbox) -> None:
    with pytest.raises(GuestFileNotFoundError, match="/no/such/file"):
        sb.files.read("/no/such/file")
    with pytest.raises(GuestFileNotFoundError):
        sb.files.stat("/no/such/file")
    with pytest.raises(UserError, match="folder"):
        sb.files.read("/etc")


# -- the VM --------------------------------------------------------------------------------------


def test_attach_knows_the_vm_and_refuses_a_missing_one(home: DataDir, sb: Sandbox) -> None:
    assert sb.name == "box"
    assert sb.info()["state"] == "running"
    assert sb.expires_at is None
    assert repr(sb) == "Sandbox('box', open)"
    with pytest.raises(VmNotFoundError):
        Sandbox.attach("ghost", home=home)


def test_closing_deletes_an_owned_vm_and_later_calls_say_gone(
    home: DataDir, client: Client
) -> None:
    client.create_vm(name="doomed", image="debian-12", cpus=1, memory="512M")
    watcher = Sandbox.attach("doomed", home=home, owned=False)
    with Sandbox.attach("doomed", home=home) as owner:
        assert owner.exec("echo alive").stdout == "alive\n"
    with pytest.raises(VmNotFoundError):
        client.get_vm("doomed")
    with pytest.raises(SandboxGoneError, match="closed"):
        owner.exec("true")
    owner.close()
    with pytest.raises(SandboxGoneError, match="gone"):
        watcher.exec("true")
    with pytest.raises(SandboxGoneError):
        watcher.files.read("/etc/hostname")
    watcher.kill()  # the VM is already gone: nothing to do, and no error


# -- sandboxes (POST /v1/sandboxes, fork, lease) -------------------------------------------------


def test_a_sandbox_runs_commands_and_is_deleted_on_leaving_the_block(
    home: DataDir, client: Client
) -> None:
    with Sandbox(image="debian-12", cpus=1, memory="512M", timeout="10m", home=home) as sb:
        name = sb.name
        assert name.startswith("sb-")
        info = sb.info()
        assert info["sandbox"] is True and info["state"] == "running"
        assert sb.expires_at is not None and abs(sb.expires_at - (time.time() + 600)) < 60
        assert sb.exec("python3 -c 'print(6*7)'").stdout == "42\n"
        assert [chunk.text for chunk in sb.exec_stream("echo streamed")] == ["streamed\n"]
        sb.files.write("/tmp/in.json", b"{}")
        assert sb.files.read("/tmp/in.json") == b"{}"
        later = sb.set_timeout("5m")
        assert later is not None and abs(later - (time.time() + 300)) < 60
        assert sb.set_timeout(None) is None and sb.info()["expires_at"] is None
    with pytest.raises(VmNotFoundError):
        client.get_vm(name)
    with pytest.raises(SandboxGoneError):
        sb.exec("true")


def test_a_block_that_raises_still_deletes_the_sandbox(home: DataDir, client: Client) -> None:
    names = []
    with pytest.raises(RuntimeError, match="boom"), Sandbox(home=home) as sb:
        names.append(sb.name)
        raise RuntimeError("boom")
    with pytest.raises(VmNotFoundError):
        client.get_vm(names[0])


def test_fork_gives_running_independent_machines(home: DataDir, client: Client) -> None:
    with Sandbox(home=home) as sb:
        sb.files.write("/root/state", "parent")
        sb.exec(
            "setsid -f sh -c 'echo $$ > /root/pid; exec sleep 1000' >/dev/null 2>&1; "
            "while [ ! -s /root/pid ]; do sleep 0.1; done"
        )
        kids = sb.fork(2)
        try:
            assert len({sb.name, *(kid.name for kid in kids)}) == 3
            for kid in kids:
                assert kid.info()["parent"] == sb.name
                assert kid.files.read_text("/root/state") == "parent"
                assert kid.exec("kill -0 $(cat /root/pid)").ok, "the running process was lost"
            kids[0].files.write("/root/state", "child")
            assert kids[1].files.read_text("/root/state") == "parent"
            assert sb.files.read_text("/root/state") == "parent"
        finally:
            for kid in kids:
                kid.close()
    for kid in kids:
        with pytest.raises(VmNotFoundError):
            client.get_vm(kid.name)


def test_a_sandbox_past_its_timeout_is_deleted_by_the_daemon(home: DataDir, client: Client) -> None:
    sb = Sandbox(home=home, timeout="1h")
    try:
        with clock_moved(home, 3601):  # the daemon's clock passes the timeout
            wait_until(f"{sb.name}'s removal", lambda: _gone(client, sb.name))
        with pytest.raises(SandboxGoneError, match="timeout"):
            sb.exec("true")
    finally:
        sb.close()
