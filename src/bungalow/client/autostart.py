"""Start bungalowd when it is not running, so a new user never has to."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bungalow.errors import DaemonError
from bungalow.paths import DataDir

START_TIMEOUT = 20.0
#: Free bytes under which the data directory's disk is too full for the daemon to start.
TOO_FULL = 1 << 20


def daemon_answers(data: DataDir, timeout: float = 2.0) -> bool:
    """Is something accepting connections on the data directory's socket (within ``timeout``
    seconds)?"""
    if not data.socket.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(timeout)
        probe.connect(str(data.socket))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def ensure_daemon(data: DataDir) -> None:
    if daemon_answers(data):
        return
    try:
        data.ensure()
    except OSError as exc:
        raise DaemonError(
            f"Cannot create the data directory {data.root}: {exc.strerror}."
        ) from None
    with open(data.daemon_log, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bungalow.daemon", "--home", str(data.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if daemon_answers(data):
            return
        if process.poll() not in (None, 0):
            break
        time.sleep(0.05)
    if _disk_full(data.root):  # its database, log and pidfile cannot even be written
        raise DaemonError(
            f"bungalowd could not start: the disk under {data.root} is full; free space "
            "there, then try again."
        )
    why = _last_line(data.daemon_log)
    if why:
        raise DaemonError(f"bungalowd did not start: {why.rstrip('.')}.")
    raise DaemonError(f"bungalowd did not start; its log is {data.daemon_log}.")


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")[:300]


def _disk_full(root: Path) -> bool:
    try:
        stat = os.statvfs(root)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < TOO_FULL
