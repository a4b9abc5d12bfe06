"""The SDK's own logic against an ``httpx.MockTransport`` daemon: no VM, milliseconds each.

What the SDK sends, how it folds the answers into results and errors, and the
state guard of sandbox_base (new, open, closed; a vanished VM is "gone").
tests/client/test_sandbox.py runs the same SDK against real VMs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from bungalow import (
    AsyncSandbox,
    Client,
    CommandFailedError,
    CommandTimeoutError,
    GuestFileNotFoundError,
    InvalidStateError,
    Sandbox,
    SandboxGoneError,
    UserError,
    VmNotFoundError,
)
from tests.client.answers import (
    Daemon,
    error_answer,
    exit_event,
    json_answer,
    ndjson_answer,
    output,
    vm_info,
)

SB = "sb-1a2b"
EXEC = f"/v1/vms/{SB}/exec"


@pytest.fixture
def daemon() -> Daemon:
    """A daemon that makes the sandbox ``sb-1a2b`` and deletes it when asked."""
    created = vm_info(SB, sandbox=True, expires_at=1_767_226_200.0, expires_in=600.0)
    return (
        Daemon()
        .on("POST", "/v1/sandboxes", json_answer(created, 201))
        .on("GET", f"/v1/vms/{SB}", json_answer(created))
        .on("DELETE", f"/v1/vms/{SB}", httpx.Response(204))
    )


@pytest.fixture
def api(daemon: Daemon) -> Iterator[Client]:
    with daemon.client() as client:
        yield client


def test_creating_sends_the_checked_keywords_and_closing_deletes(
    daemon: Daemon, api: Client
) -> None:
    with Sandbox("debian-13", client=api, memory="1G", timeout="90s", warm=False) as sb:
        assert (sb.name, sb.expires_at, sb.closed) == (SB, 1_767_226_200.0, False)
        assert repr(sb) == f"Sandbox({SB!r}, open)"
    assert daemon.body("POST", "/v1/sandboxes") == {
        "image": "debian-13", "cpus": 1, "memory": "1G", "disk": None, "timeout": 90.0,
        "name": None, "warm": False,
    }  # fmt: skip
    assert len(daemon.sent("DELETE", f"/v1/vms/{SB}")) == 1
    assert sb.closed and repr(sb) == f"Sandbox({SB!r}, closed)"


def test_keywords_are_checked_before_the_daemon_is_asked(daemon: Daemon, api: Client) -> None:
    with pytest.raises(TypeError, match="cpu"):
        Sandbox(client=api, cpu=2)  # type: ignore[call-arg]
    with pytest.raises(UserError, match="duration"):
        Sandbox(client=api, timeout="soon")
    with pytest.raises(TypeError, match="home or client"):
        Sandbox(client=api, home="/tmp/elsewhere")
    assert daemon.requests == []


def test_a_given_client_is_shared_and_left_open(daemon: Daemon, api: Client) -> None:
    with Sandbox(client=api) as sb:
        pass
    assert sb.closed
    api.get_vm(SB)  # still usable: the sandbox did not close it


def test_exec_sends_the_command_and_returns_its_result(daemon: Daemon, api: Client) -> None:
    daemon.on(
        "POST",
        EXEC,
        ndjson_answer([output("stdout", b"42\n"), output("stderr", b"w\n"), exit_event(0)]),
    )
    with Sandbox(client=api) as sb:
        result = sb.exec(["python3", "-"], stdin="print(6*7)", env={"A": "1"}, cwd="/srv")
    assert (result.stdout, result.stderr, result.exit_code, result.ok) == ("42\n", "w\n", 0, True)
    assert daemon.body("POST", EXEC) == {
        "argv": ["python3", "-"], "env": {"A": "1"}, "cwd": "/srv", "user": None,
        "timeout": None, "stdin": "cHJpbnQoNio3KQ==",
    }  # fmt: skip


def test_check_raises_for_a_failure_and_a_timeout_always_raises(
    daemon: Daemon, api: Client
) -> None:
    with Sandbox(client=api) as sb:
        daemon.on("POST", EXEC, ndjson_answer([output("stderr", b"boom\n"), exit_event(1)]))
        assert sb.exec("false").exit_code == 1
        with pytest.raises(CommandFailedError, match="`false` exited with status 1: boom"):
            sb.exec("false", check=True)
        partial = [output("stdout", b"started\n"), exit_event(None, 9, timed_out=True)]
        daemon.on("POST", EXEC, ndjson_answer(partial))
        with pytest.raises(CommandTimeoutError, match="timeout of 2s") as timeout:
            sb.exec("sleep 30", timeout=2)
    assert daemon.body("POST", EXEC)["timeout"] == 2.0
    assert timeout.value.result is not None and timeout.value.result.stdout == "started\n"


def test_a_stream_hands_out_chunks_then_its_result(daemon: Daemon, api: Client) -> None:
    events = [output("stdout", b"a"), output("stderr", b"b"), exit_event(4)]
    daemon.on("POST", EXEC, ndjson_answer(events))
    with Sandbox(client=api) as sb:
        stream = sb.exec_stream("work")
        with pytest.raises(InvalidStateError, match="not finished"):
            _ = stream.result
        assert [(chunk.stream, chunk.text) for chunk in stream] == [
            ("stdout", "a"),
            ("stderr", "b"),
        ]
        assert (stream.result.exit_code, stream.result.stdout_bytes) == (4, b"")


def test_a_vm_the_daemon_no_longer_knows_is_a_gone_sandbox(daemon: Daemon, api: Client) -> None:
    sb = Sandbox(client=api)
    daemon.on("POST", EXEC, error_answer(VmNotFoundError(f"There is no VM named {SB}.")))
    daemon.on("DELETE", f"/v1/vms/{SB}", error_answer(VmNotFoundError("gone")))
    with pytest.raises(SandboxGoneError, match="is gone") as gone:
        sb.exec("true")
    assert isinstance(gone.value, VmNotFoundError)
    sb.kill()  # the VM is gone already: nothing to do, and no error
    with pytest.raises(SandboxGoneError, match="is closed"):
        sb.exec("true")
    sb.close()  # closing twice is fine


def test_attach_without_owning_leaves_the_vm_alone(daemon: Daemon, api: Client) -> None:
    with Sandbox.attach(SB, client=api, owned=False) as sb:
        assert sb.info()["state"] == "running"
        assert not sb.owned
    assert daemon.sent("DELETE", f"/v1/vms/{SB}") == []
    daemon.on("GET", "/v1/vms/ghost", error_answer(VmNotFoundError("There is no VM ghost.")))
    with pytest.raises(VmNotFoundError, match="ghost"):
        Sandbox.attach("ghost", client=api)


def test_info_and_set_timeout_keep_the_latest_answer(daemon: Daemon, api: Client) -> None:
    daemon.on("POST", f"/v1/vms/{SB}/lease", json_answer(vm_info(SB, expires_at=None)))
    with Sandbox(client=api) as sb:
        info = sb.info()
        info["state"] = "edited by the caller"
        assert sb.info()["state"] == "running", "info() hands out a copy"
        assert sb.set_timeout(None) is None and sb.expires_at is None
    assert daemon.body("POST", f"/v1/vms/{SB}/lease") == {"timeout": None, "on_expiry": None}


def test_files_map_missing_paths_and_folders_to_errors(daemon: Daemon, api: Client) -> None:
    daemon.on("GET", f"/v1/vms/{SB}/files/stat", json_answer({"exists": False}))
    daemon.on("GET", f"/v1/vms/{SB}/files", httpx.Response(200, headers={"x-bungalow-kind": "dir"}))
    daemon.on("PUT", f"/v1/vms/{SB}/files", httpx.Response(204))
    with Sandbox(client=api) as sb:
        assert not sb.files.exists("/nope")
        with pytest.raises(GuestFileNotFoundError, match="/nope"):
            sb.files.stat("/nope")
        with pytest.raises(UserError, match="folder"):
            sb.files.read("/etc")
        sb.files.write("/tmp/x.txt", "héllo", mode=0o600)
    (upload,) = daemon.sent("PUT", f"/v1/vms/{SB}/files")
    assert upload.url.params["path"] == "/tmp/x.txt" and upload.url.params["mode"] == "384"
    assert upload.content == "héllo".encode()


def test_fork_children_share_a_given_client(daemon: Daemon, api: Client) -> None:
    kids = [vm_info(f"{SB}-{n}", parent=SB) for n in (1, 2)]
    daemon.on("POST", f"/v1/vms/{SB}/fork", json_answer(kids, 201))
    with Sandbox(client=api) as sb:
        children = sb.fork(2)
    assert [child.name for child in children] == [f"{SB}-1", f"{SB}-2"]
    assert all(child._client is api for child in children)
    assert json.loads(daemon.sent("POST", f"/v1/vms/{SB}/fork")[0].content) == {"count": 2}


# -- the async SDK: the same guard and the same results ------------------------------------------


async def test_an_async_sandbox_is_created_on_entering_and_deleted_on_leaving(
    daemon: Daemon,
) -> None:
    daemon.on("POST", EXEC, ndjson_answer([output("stdout", b"hi\n"), exit_event(0)]))
    async with daemon.async_client() as api:
        sb = AsyncSandbox(client=api, timeout=None)
        with pytest.raises(InvalidStateError, match="not created yet"):
            _ = sb.name
        assert daemon.requests == []
        async with sb:
            assert (await sb.exec("echo hi")).stdout == "hi\n"
            assert [chunk.text async for chunk in sb.exec_stream("echo hi")] == ["hi\n"]
        assert sb.closed
        with pytest.raises(SandboxGoneError, match="is closed"):
            await sb.exec("true")
        assert (await api.get_vm(SB))["name"] == SB, "a given client is left open"
    assert daemon.body("POST", "/v1/sandboxes")["timeout"] is None
    assert len(daemon.sent("DELETE", f"/v1/vms/{SB}")) == 1


async def test_an_async_timeout_raises_with_the_partial_output(daemon: Daemon) -> None:
    partial = [output("stdout", b"started\n"), exit_event(None, 9, timed_out=True)]
    daemon.on("POST", EXEC, ndjson_answer(partial))
    async with daemon.async_client() as api, await AsyncSandbox.create(client=api) as sb:
        with pytest.raises(CommandTimeoutError) as timeout:
            await sb.exec("sleep 30", timeout="1s")
    assert timeout.value.result is not None and timeout.value.result.stdout == "started\n"
