"""The agent as PID 1 (``--init``), in a PID and mount namespace of its own.

``unshare --pid --mount`` gives the agent what a guest kernel gives it: PID 1,
orphans to reap, and mounts nobody else sees. Outside the machine's initial
PID namespace the agent skips resize2fs and the read-only remount, and
reboot(2) ends only the namespace, so this is safe on a developer's machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.errors import AgentError
from bungalow.guest import AgentChannel, agent_init

from .conftest import AgentProcess

pytestmark = pytest.mark.timeout(60)

UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture
def init_agent() -> Iterator[AgentProcess]:
    if not _can_unshare():
        pytest.skip("needs root and unshare(1) for PID and mount namespaces")
    # Not under /tmp: the agent mounts a tmpfs there, hiding a socket made below it.
    directory = Path(tempfile.mkdtemp(prefix="bungalow-init-", dir="/var/tmp"))
    process = AgentProcess(directory / "agent.sock", UNSHARE, "--init").start()
    try:
        yield process
    finally:
        process.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def _run(channel: AgentChannel, script: str) -> str:
    result = await (await channel.exec(["sh", "-c", script])).collect()
    assert result.exit_code == 0, result
    return result.stdout.decode()


async def test_init_mounts_reaps_and_respawns(init_agent: AgentProcess) -> None:
    async with await AgentChannel.connect(init_agent.socket, timeout=15) as channel:
        assert "--init" in await _run(channel, "tr '\\0' ' ' < /proc/1/cmdline")
        mounts = await _run(channel, "cat /proc/self/mounts")
        assert "devpts /dev/pts devpts" in mounts
        assert "tmpfs /tmp tmpfs" in mounts and "tmpfs /dev/shm tmpfs" in mounts
        tty = await (await channel.exec(["tty"], tty=True)).collect()
        assert tty.stdout.startswith(b"/dev/pts/")
        # An orphan is reparented to PID 1, which must reap it.
        states = await _run(
            channel, "(sleep 0.2 &); sleep 1; cat /proc/[0-9]*/stat | awk '{print $3}'"
        )
        assert "Z" not in states.split(), "PID 1 left a zombie"
        server = (await _run(channel, "echo $PPID")).strip()
        assert server != "1"
        # Kill the server: PID 1 starts a new one on the same socket.
        with contextlib.suppress(AgentError):  # may die before it reports the start
            await channel.exec(["kill", "-9", server])
        await asyncio.wait_for(channel.wait_closed(), 5)
    async with await AgentChannel.connect(init_agent.socket, timeout=15) as channel:
        assert (await _run(channel, "echo $PPID")).strip() != server


async def test_shutdown_powers_off(init_agent: AgentProcess) -> None:
    async with await AgentChannel.connect(init_agent.socket, timeout=15) as channel:
        await _run(channel, "true")
        await channel.shutdown()
        await asyncio.wait_for(channel.wait_closed(), 10)
    init_agent.wait_exit(timeout=10)  # reboot(2) ended the namespace


async def test_sigterm_to_pid_1_powers_off(init_agent: AgentProcess) -> None:
    async with await AgentChannel.connect(init_agent.socket, timeout=15) as channel:
        with contextlib.suppress(AgentError):
            await channel.exec(["kill", "-TERM", "1"])
        await asyncio.wait_for(channel.wait_closed(), 10)
    init_agent.wait_exit(timeout=10)


def test_init_refuses_to_run_as_an_ordinary_process(tmp_path: Path) -> None:
    process = AgentProcess(tmp_path / "agent.sock", None, "--init").start()
    try:
        assert process.wait_exit() != 0
        assert process.proc is not None and process.proc.stderr is not None
        assert b"PID 1" in process.proc.stderr.read()
    finally:
        process.stop()


def test_ext4_superblock_is_read(tmp_path: Path) -> None:
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mke2fs")
    if mkfs is None:
        pytest.skip("needs mkfs.ext4")
    image = tmp_path / "disk.img"
    with open(image, "wb") as disk:
        disk.truncate(16 << 20)
    subprocess.run([mkfs, "-q", "-F", "-b", "4096", str(image), "8M"], check=True)
    assert agent_init._ext4_size(str(image)) == (16 << 20, 8 << 20)
    # The root of this machine is not on that file: nothing is grown.
    assert agent_init.grow_root(str(image)) is None
    plain = tmp_path / "plain"
    plain.write_bytes(b"\0" * 4096)
    assert agent_init._ext4_size(str(plain)) is None
