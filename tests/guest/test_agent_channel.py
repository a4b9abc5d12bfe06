"""The channel's life: connecting, reconnecting, losing the agent, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import tty
from pathlib import Path
from typing import BinaryIO

import pytest

from bungalow import guest
from bungalow.errors import AgentError, InvalidStateError
from bungalow.guest import AgentChannel, protocol

from .conftest import GUEST_PYTHON, AgentProcess, process_gone

pytestmark = pytest.mark.timeout(60)


async def test_ping(agent: AgentProcess) -> None:
    expected = subprocess.run(
        [GUEST_PYTHON, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        info = await channel.ping()
        assert info.protocol == 1 and info.version and info.uptime > 0
        assert info.python == expected


async def test_connect_waits_for_a_late_agent(tmp_path: Path) -> None:
    process = AgentProcess(tmp_path / "late.sock")
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, process.start)
    try:
        channel = await AgentChannel.connect(process.socket, timeout=10)
        assert process.proc is not None  # connected only once the agent was started
        assert (await channel.ping()).protocol == 1
        await channel.close()
    finally:
        process.stop()


async def test_connect_times_out_with_a_clear_error(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # accepts, never answers
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen(1)
    start = time.monotonic()
    with pytest.raises(AgentError, match="did not answer"):
        await AgentChannel.connect(tmp_path / "silent.sock", timeout=0.5)
    with pytest.raises(AgentError, match="did not answer"):
        await AgentChannel.connect(tmp_path / "absent.sock", timeout=0.3)
    assert time.monotonic() - start < 3
    silent.close()


async def test_connect_gives_up_on_a_port_that_never_reads(tmp_path: Path) -> None:
    # QEMU accepts on the agent's socket but reads nothing while the guest's port is
    # closed (firmware that never boots the kernel): the hellos fill the socket.
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deaf.bind(str(tmp_path / "deaf.sock"))
    deaf.listen(1)
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    start = time.monotonic()
    try:
        with pytest.raises(AgentError, match="did not answer"):
            await AgentChannel.connect(tmp_path / "deaf.sock", timeout=1.0)
        assert time.monotonic() - start < 30  # not forever
    finally:
        deaf.close()


async def test_close_drops_what_a_deaf_peer_never_reads(tmp_path: Path) -> None:
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deaf.bind(str(tmp_path / "deaf.sock"))
    deaf.listen(1)
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "deaf.sock"))
    channel = AgentChannel(reader, writer, str(tmp_path / "deaf.sock"))
    writer.write(b"x" * (8 << 20))  # far more than the socket holds: the rest stays buffered
    try:
        await asyncio.wait_for(channel.close(), timeout=30)
        assert channel.closed
    finally:
        deaf.close()


async def test_reconnect_to_the_same_agent(agent: AgentProcess) -> None:
    first = await AgentChannel.connect(agent.socket, timeout=10)
    session = await first.exec(["sleep", "30"])
    await first.close()
    assert first.closed
    with pytest.raises(AgentError):
        await first.ping()
    with pytest.raises(AgentError):
        async for _ in session.events():
            pass
    assert session.pid is not None and process_gone(session.pid), "a lost host's exec lives on"
    async with await AgentChannel.connect(agent.socket, timeout=10) as second:
        result = await (await second.exec(["echo", "again"])).collect()
        assert result.stdout == b"again\n"


async def test_garbage_lines_are_skipped(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        channel._writer.write(b'not json\n{"no": "id"}\n' + b"x" * 2_000_000 + b"\n")
        assert (await channel.ping()).protocol == 1
        session = await channel.exec(["echo", "fine"])
        assert (await session.collect()).stdout == b"fine\n"


async def test_agent_death_fails_pending_operations(agent: AgentProcess) -> None:
    channel = await AgentChannel.connect(agent.socket, timeout=10)
    session = await channel.exec(["sleep", "30"])
    events = asyncio.create_task(session.collect())
    await asyncio.sleep(0)  # the task starts and waits for the command's events
    assert agent.proc is not None
    agent.proc.kill()
    await asyncio.wait_for(channel.wait_closed(), 5)
    assert channel.closed
    with pytest.raises(AgentError, match="lost"):
        await events
    with pytest.raises(AgentError):
        await channel.exec(["true"])
    assert session.pid is not None
    os.kill(session.pid, signal.SIGKILL)  # a dead agent leaves its commands running
    # A new agent on the same socket path: a new channel reaches it.
    agent.stop()
    agent.start()
    async with await AgentChannel.connect(agent.socket, timeout=10) as again:
        assert (await again.ping()).protocol == 1


async def test_an_interrupt_ends_what_is_under_way_and_the_agent_ends_it_once_it_runs(
    agent: AgentProcess,
) -> None:
    """As when QEMU holds the guest for a full disk: the agent is stopped, the callers are
    answered at once with the reason, and the commands end once it runs again."""
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        session = await channel.exec(["sleep", "30"])
        events = asyncio.create_task(session.collect())
        await asyncio.sleep(0)
        assert agent.proc is not None and session.pid is not None
        agent.proc.send_signal(signal.SIGSTOP)  # the guest no longer runs
        try:
            channel.interrupt(InvalidStateError("The VM web was paused before this finished."))
            with pytest.raises(InvalidStateError, match="paused before this finished"):
                await events
        finally:
            agent.proc.send_signal(signal.SIGCONT)
        assert process_gone(session.pid)
        assert (await (await channel.exec(["echo", "on"])).collect()).stdout == b"on\n"


async def test_shutdown_of_a_host_agent_ends_its_process(agent: AgentProcess) -> None:
    channel = await AgentChannel.connect(agent.socket, timeout=10)
    await channel.shutdown()
    await asyncio.wait_for(channel.wait_closed(), 5)
    assert agent.wait_exit() == 0


def test_public_surface() -> None:
    assert sorted(guest.__all__) == sorted(
        [
            "AGENT_ENTRY",
            "GUEST_FILES",
            "AgentChannel",
            "ExecEvent",
            "ExecResult",
            "ExecSession",
            "PingResult",
            "StatResult",
        ]
    )
    for name in guest.__all__:
        assert getattr(guest, name) is not None


def test_guest_files_are_every_agent_module() -> None:
    package = Path(guest.__file__).parent
    agent_side = {p.name for p in package.glob("agent*.py")} | {"protocol.py"}
    assert {p.name for p in guest.GUEST_FILES} == agent_side
    assert all(p.is_file() for p in guest.GUEST_FILES)


def test_agent_on_a_character_device(tmp_path: Path) -> None:
    """``--port`` serves a character device, as the virtio port is in a guest (a pty here)."""
    master, slave = os.openpty()
    tty.setraw(slave)  # a virtio port has no line discipline
    process = AgentProcess(tmp_path / "unused.sock")
    argv = [GUEST_PYTHON, "-I", "-S", str(process.agent), "--port", os.ttyname(slave)]
    agent = subprocess.Popen(argv, stderr=subprocess.PIPE)
    try:
        assert agent.stderr is not None
        assert agent.stderr.readline() == b"bungalow-agent: ready\n"
        with os.fdopen(master, "r+b", buffering=0) as port:
            port.write(protocol.encode(protocol.request(protocol.OP_PING, 1)))
            assert protocol.decode(_read_line(port))["type"] == "pong"
            port.write(protocol.encode(protocol.request(protocol.OP_EXEC, 2, argv=["echo", "hi"])))
            events = [protocol.decode(_read_line(port)) for _ in range(3)]
            assert [e["type"] for e in events] == ["started", "stdout", "exit"]
            assert protocol.decode_data(events[1]) == b"hi\n" and events[2]["code"] == 0
    finally:
        os.close(slave)
        agent.kill()
        agent.wait()
        assert agent.stderr is not None
        agent.stderr.close()


def _read_line(port: BinaryIO) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        line += port.read(1)
    return line


async def test_hello_ends_what_an_earlier_host_started(agent: AgentProcess) -> None:
    """A daemon that reconnects at once may never show the guest a disconnect."""
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        session = await channel.exec(["sleep", "30"])
        await channel._handshake()  # what the next host sends first
        assert session.pid is not None and process_gone(session.pid)
        assert (await (await channel.exec(["echo", "ok"])).collect()).stdout == b"ok\n"
