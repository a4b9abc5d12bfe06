"""Small helpers the whole suite shares: waiting for a condition, host ports, processes.

A test never sleeps a fixed time hoping something happened: it waits until it
sees it (:func:`wait_until`), with a short poll interval and a generous bound.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    what: str, check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Call ``check`` until it returns something true, and return that; fail naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(interval)
    return value


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (ask for it inside the test)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def http_get(url: str) -> bytes | None:
    """The body at ``url``, or None while nothing answers there (for :func:`wait_until`)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return bytes(reply.read())
    except OSError:
        return None


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (``Z`` for a zombie), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie waiting for its parent counts as ended).

    A killed process's first thread turns zombie while its others are still exiting, and
    its files (a listening socket) close only with the last: ``/proc/PID/task`` says when.
    """
    state = process_state(pid)
    if state is None:
        return True
    try:
        threads = [task for task in Path(f"/proc/{pid}/task").iterdir() if task.name != str(pid)]
    except OSError:
        threads = []
    return state == "Z" and not threads


def kill(pid: int, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
    """Send ``sig`` to ``pid`` and wait until it has ended."""
    os.kill(pid, sig)
    wait_until(f"process {pid} to end", lambda: gone(pid), timeout, interval=0.02)


def unique_disk(path: Path, size: str = "64M", fmt: str = "raw") -> Path:
    """A blank disk file of ``fmt`` whose content no other test's has (a random id at 1 MiB).

    Images are one content under one name (images/store.py), so two tests importing blank
    disks of one size into the shared store under two names would refuse each other.
    """
    raw = path if fmt == "raw" else path.with_name(path.name + ".raw")
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), size], check=True)
    with raw.open("r+b") as file:
        file.seek(1 << 20)
        file.write(uuid.uuid4().bytes)
    if fmt != "raw":
        subprocess.run(
            ["qemu-img", "convert", "-q", "-f", "raw", "-O", fmt, str(raw), str(path)], check=True
        )
        raw.unlink()
    return path
