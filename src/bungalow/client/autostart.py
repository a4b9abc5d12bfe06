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
