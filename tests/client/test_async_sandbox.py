"""The asyncio SDK against a real daemon and real VMs (``async def`` tests run in
a fresh event loop each, see tests/conftest.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bungalow import (
    AsyncSandbox,
    CommandTimeoutError,
    GuestFileNotFoundError,
    InvalidStateError,
    SandboxGoneError,
    VmNotFoundError,
)
from bungalow.client.http import Client
from bungalow.paths import DataDir

pytestmark = pytest.mark.vm


async def test_commands_run_concurrently_in_one_sandbox(home: DataDir, box: str) -> None:
    async with await AsyncSandbox.attach(box, home=home, owned=False) as sb:
        results = await asyncio.gather(
            *(sb.exec(f"sleep 1; echo {n}; echo err{n} >&2; exit {n}") for n in range(3))
        )
        assert [(r.stdout, r.stderr, r.exit_code) for r in results] == [
            (f"{n}\n", f"err{n}\n", n) for n in range(3)
        ]
        piped = await sb.exec(["tr", "a-z", "A-Z"], stdin=b"shout", env={"X": "1"}, cwd="/tmp")
        assert piped.stdout == "SHOUT"


async def test_exec_stream_and_timeouts(home: DataDir, box: str) -> None:
    async with await AsyncSandbox.attach(box, home=home, owned=False) as sb:
        stream = sb.exec_stream("echo first; sleep 2; echo second >&2")
        with pytest.raises(InvalidStateError):
            _ = stream.result
        chunks = [(chunk.stream, chunk.data) async for chunk in stream]
        assert chunks == [("stdout", b"first\n"), ("stderr", b"second\n")]
        assert stream.result.ok
        with pytest.raises(CommandTimeoutError) as timeout:
            await sb.exec("echo started; sleep 30", timeout="1s")
        assert timeout.value.result is not None and timeout.value.result.stdout == "started\n"
        async with sb.exec_stream("echo ready; exec sleep 600") as early:
            assert (await anext(early)).text == "ready\n"


async def test_files_round_trip_and_missing_files_raise(home: DataDir, box: str) -> None:
    async with await AsyncSandbox.attach(box, home=home, owned=False) as sb:
        await sb.files.write("/tmp/async/data.bin", bytes(range(256)), mode=0o640)
        assert await sb.files.read("/tmp/async/data.bin") == bytes(range(256))
        await sb.files.write("/tmp/async/note.txt", "héllo")
        assert await sb.files.read_text("/tmp/async/note.txt") == "héllo"
        info = await sb.files.stat("/tmp/async/data.bin")
        assert (info.size, info.mode & 0o777) == (256, 0o640)
        assert await sb.files.exists("/tmp/async/note.txt")
        assert not await sb.files.exists("/tmp/async/nope")
        with pytest.raises(GuestFileNotFoundError):
            await sb.files.read("/tmp/async/nope")


async def test_a_closed_or_uncreated_sandbox_refuses_calls(home: DataDir, box: str) -> None:
    sb = await AsyncSandbox.attach(box, home=home, owned=False)
    assert (await sb.info())["name"] == box
    await sb.close()
    await sb.close()
    with pytest.raises(SandboxGoneError, match="closed"):
        await sb.exec("true")
    never = AsyncSandbox(home=home)
    with pytest.raises(InvalidStateError, match="not created"):
        _ = never.name
    await never.close()
    with pytest.raises(VmNotFoundError):
        await AsyncSandbox.attach("ghost", home=home)


# -- sandboxes (POST /v1/sandboxes, fork) --------------------------------------------------------


async def test_an_async_sandbox_forks_and_is_deleted_on_leaving(
    home: DataDir, client: Client
) -> None:
    async with AsyncSandbox(home=home, timeout=600) as sb:
        assert sb.expires_at is not None and sb.expires_at > time.time() + 500
        await sb.files.write("/root/state", "parent")
        [kid] = await sb.fork(1)
        async with kid:
            assert kid.name != sb.name
            assert await kid.files.read_text("/root/state") == "parent"
            assert (await kid.exec("echo kid")).stdout == "kid\n"
        name = sb.name
    for gone in (name, kid.name):
        with pytest.raises(VmNotFoundError):
            client.get_vm(gone)
    with pytest.raises(SandboxGoneError):
        await sb.exec("true")


async def test_create_makes_a_sandbox_the_caller_closes(home: DataDir, client: Client) -> None:
    sb = await AsyncSandbox.create(home=home, timeout="2m", warm=False)
    try:
        assert (await sb.exec("uname -n")).stdout.strip() == sb.name
    finally:
        await sb.kill()
    with pytest.raises(VmNotFoundError):
        client.get_vm(sb.name)
