"""VM names the host itself resolves: a managed block in /etc/hosts.

No systemd-resolved runs here (and many hosts have none), so the host learns
``db.backend`` from a block of /etc/hosts that each daemon keeps for itself,
marked with its data directory::

    # >>> bungalow /var/lib/bungalow
    10.20.0.2 db.backend
    # <<< bungalow /var/lib/bungalow

The file is rewritten in place (a container's /etc/hosts is a bind mount that a
rename would not reach) under an exclusive ``flock`` on the file itself, so daemons
writing their blocks at once do not lose each other's.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

HOSTS = Path("/etc/hosts")


def _begin(marker: str) -> str:
    return f"# >>> {marker}"


def _end(marker: str) -> str:
    return f"# <<< {marker}"


def replace_block(text: str, marker: str, lines: list[str]) -> str:
    """``text`` with the block marked ``marker`` holding ``lines`` where it stood (at the
    end when there was none; gone when ``lines`` is empty), everything else kept. Pure."""
    new = [_begin(marker), *lines, _end(marker)] if lines else []
    kept: list[str] = []
    inside = placed = False
    for line in text.splitlines():
        if line == _begin(marker):
            inside = True
            if not placed:
                kept += new
                placed = True
        elif line == _end(marker):
            inside = False
        elif not inside:
            kept.append(line)
    if not placed:
        kept += new
    return "".join(f"{line}\n" for line in kept)


def write_block(marker: str, lines: list[str], path: Path = HOSTS) -> bool:
    """Make ``path``'s block marked ``marker`` hold ``lines``; True if the file changed."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+") as hosts:
        fcntl.flock(hosts, fcntl.LOCK_EX)
        text = hosts.read()
        new = replace_block(text, marker, lines)
        if new == text:
            return False
        hosts.seek(0)
        hosts.write(new)
        hosts.truncate()
        return True


def block(marker: str, path: Path = HOSTS) -> list[str]:
    """The lines of the block marked ``marker``."""
    found: list[str] = []
    inside = False
    for line in path.read_text().splitlines():
        if line == _begin(marker):
            inside = True
        elif line == _end(marker):
            inside = False
        elif inside:
            found.append(line)
    return found
