"""Fixtures for the guest layer: the real agent, run as a host process.

The agent listens on a Unix socket (``--listen-unix``) the way QEMU's chardev
does, so the channel under test connects exactly as it does to a VM. The
agent runs with ``-I -S`` from its source directory, as in the guest: only
the standard library and its sibling files, copied alone into a directory
of their own as the image builder copies them to /run/bungalow. ``BUNGALOW_GUEST_PYTHON`` picks
another interpreter, e.g. a Debian 11 python3.9, to check old guests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.guest import AGENT_ENTRY, GUEST_FILES
from tests.support import gone

GUEST_PYTHON = os.environ.get("BUNGALOW_GUEST_PYTHON", sys.executable)


def install_guest_files(directory: Path) -> Path:
    """Copy GUEST_FILES into one directory, as the image builder does; the entry point."""
    directory.mkdir(exist_ok=True)
    for path in GUEST_FILES:
        shutil.copy(path, directory / path.name)
    return directory / AGENT_ENTRY


class AgentProcess:
    """One agent process listening on ``socket``; restartable on the same path."""

    def __init__(self, socket: Path, prefix: list[str] | None = None, *extra: str) -> None:
        self.socket = socket
        self.agent = install_guest_files(socket.parent / "run-bungalow")
        self.prefix = prefix or []
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        argv = [*self.prefix, GUEST_PYTHON, "-I", "-S", str(self.agent)]
        argv += ["--listen-unix", str(self.socket), *self.extra]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)
            assert self.proc.stderr is not None
            self.proc.stderr.close()

    def wait_exit(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path / "agent.sock").start()
    try:
        yield process
    finally:
        process.stop()


def process_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once ``pid`` no longer runs (zombies count as gone) within ``timeout``; it looks
    at least once, so ``timeout=0`` asks whether it is gone now."""
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
