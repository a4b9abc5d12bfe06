"""stat, read_file and write_file over a real channel to a real agent process."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bungalow.errors import NotFoundError, UserError
from bungalow.guest import AgentChannel

from .conftest import AgentProcess

pytestmark = pytest.mark.timeout(60)


async def test_stat(agent: AgentProcess, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    (tmp_path / "f").chmod(0o640)
    (tmp_path / "link").symlink_to("f")
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        info = await channel.stat(str(tmp_path / "f"))
        assert info is not None and info.is_file
        assert (info.kind, info.size, info.mode) == ("file", 5, 0o640)
        directory = await channel.stat(str(tmp_path))
        assert directory is not None and directory.is_dir
        link = await channel.stat(str(tmp_path / "link"))
        assert link is not None and link.kind == "link"
        device = await channel.stat("/dev/null")
        assert device is not None and device.kind == "other"
        assert await channel.stat(str(tmp_path / "missing")) is None
        with pytest.raises(UserError, match="absolute"):
            await channel.stat("relative/path")


async def test_write_and_read_a_large_file(agent: AgentProcess, tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 7)
    target = tmp_path / "deep" / "er" / "big.bin"
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        await channel.write_file(str(target), _pieces(data, 100_000), mode=0o600)
        assert target.read_bytes() == data
        assert target.stat().st_mode & 0o7777 == 0o600
        assert os.listdir(target.parent) == ["big.bin"], "a temporary file was left behind"
        digest = hashlib.sha256()
        sizes = []
        async for chunk in channel.read_file(str(target)):
            digest.update(chunk)
            sizes.append(len(chunk))
        assert digest.digest() == hashlib.sha256(data).digest()
        assert max(sizes) <= 64 * 1024 and len(sizes) > 1


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_write_replaces_atomically_and_accepts_bytes(
    agent: AgentProcess, tmp_path: Path
) -> None:
    target = tmp_path / "file.txt"
    target.write_text("old")
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        await channel.write_file(str(target), b"new contents")
        assert target.read_bytes() == b"new contents"
        assert target.stat().st_mode & 0o7777 == 0o644
        await channel.write_file(str(tmp_path / "empty"), [])
        assert (tmp_path / "empty").read_bytes() == b""


async def test_file_errors(agent: AgentProcess, tmp_path: Path) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        with pytest.raises(NotFoundError, match="does not exist"):
            async for _ in channel.read_file(str(tmp_path / "missing")):
                pass
        with pytest.raises(UserError, match="directory"):
            async for _ in channel.read_file(str(tmp_path)):
                pass
        with pytest.raises(NotFoundError):
            await channel.write_file(str(tmp_path / "no" / "dir"), b"x", mkdirs=False)
        with pytest.raises(UserError, match="directory"):
            await channel.write_file(str(tmp_path), b"x")
        with pytest.raises(UserError, match="absolute"):
            await channel.write_file("relative", b"x")
        assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]
        assert (await channel.ping()).protocol == 1  # the channel is still usable


async def test_abandoned_read_is_cancelled(agent: AgentProcess, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"z" * (4 * 1024 * 1024))
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        reader = channel.read_file(str(big))
        first = await anext(reader)
        assert first == b"z" * len(first)
        await reader.aclose()  # tells the agent to stop
        info = await channel.stat(str(big))
        assert info is not None and info.size == 4 * 1024 * 1024
        data = b"".join([chunk async for chunk in channel.read_file(str(big))])
        assert len(data) == 4 * 1024 * 1024


async def test_stat_says_where_links_point_and_what_special_files_are(
    agent: AgentProcess, tmp_path: Path
) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    (tmp_path / "link").symlink_to("f")
    (tmp_path / "dangling").symlink_to("nowhere")
    os.mkfifo(tmp_path / "fifo")
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        link = await channel.stat(str(tmp_path / "link"))
        assert link is not None and (link.kind, link.target) == ("link", "f")
        followed = await channel.stat(str(tmp_path / "link"), follow=True)
        assert followed is not None and (followed.kind, followed.size) == ("file", 5)
        assert await channel.stat(str(tmp_path / "dangling"), follow=True) is None
        fifo = await channel.stat(str(tmp_path / "fifo"))
        assert fifo is not None and (fifo.kind, fifo.special) == ("other", "FIFO")
        device = await channel.stat("/dev/null")
        assert device is not None and device.special == "character device"
        root = await channel.stat("/")
        assert root is not None and ("proc", "proc") in root.mounts
        proc = await channel.stat("/proc/self")
        assert proc is not None and proc.kind == "link"
        assert (await channel.stat("/proc/1", follow=True)) is not None
        assert (await channel.stat("/proc/1")).fs == "proc"  # type: ignore[union-attr]


async def test_reading_gives_what_proc_files_hold_and_refuses_special_files(
    agent: AgentProcess, tmp_path: Path
) -> None:
    """A /proc file's size is 0 but reading it gives text; a FIFO or device is refused."""
    os.mkfifo(tmp_path / "fifo")
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        info = await channel.stat("/proc/cpuinfo")
        assert info is not None and info.size == 0
        text = b"".join([chunk async for chunk in channel.read_file("/proc/cpuinfo")])
        assert b"processor" in text
        for path, what in ((tmp_path / "fifo", "FIFO"), (Path("/dev/zero"), "character device")):
            with pytest.raises(UserError, match=f"is a {what} in the guest; only regular files"):
                async for _ in channel.read_file(str(path)):
                    pass
        assert (await channel.ping()).protocol == 1  # the channel is still usable
