"""What ``bungalow ssh`` needs to know of a guest, in one exec: is there an SSH server,
does it listen, and its host keys (for the CLI's known_hosts).

Run inside the guest as ``python3 -S -c SOURCE``; prints one fact a line::

    sshd 1
    listening 1
    key ssh-ed25519 AAAA... root@web

Standard library only, and only what Python has loaded at start or builds in
(``_socket``, ``os``): under TCG on a busy host, ``import socket, json, glob``
took about 10 s of the probe's 11 (:func:`parse` reads the lines on the host).
"""

from __future__ import annotations

import _socket
import os

SSHD = ("/usr/sbin/sshd", "/usr/bin/sshd", "/usr/bin/dropbear", "/usr/sbin/dropbear")
KEYS = "/etc/ssh"


def probe() -> list[str]:
    conn = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        conn.settimeout(3)
        conn.connect(("127.0.0.1", 22))
        listening = True
    except OSError:
        listening = False
    finally:
        conn.close()
    lines = [
        f"sshd {int(any(os.path.exists(path) for path in SSHD))}",
        f"listening {int(listening)}",
    ]
    try:
        names = sorted(os.listdir(KEYS))
    except OSError:
        names = []
    for name in names:
        if name.startswith("ssh_host_") and name.endswith("_key.pub"):
            try:
                with open(os.path.join(KEYS, name)) as handle:
                    lines.append("key " + handle.read().strip())
            except OSError:
                continue
    return lines


def parse(text: str) -> dict[str, object]:
    """The probe's lines as ``{"sshd": bool, "listening": bool, "host_keys": [str]}``; an
    empty dict for output that is not the probe's."""
    facts: dict[str, object] = {"host_keys": []}
    keys: list[str] = []
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("sshd", "listening"):
            facts[word] = rest == "1"
        elif word == "key" and rest:
            keys.append(rest)
    facts["host_keys"] = keys
    return facts if "sshd" in facts and "listening" in facts else {}


if __name__ == "__main__":
    print("\n".join(probe()))
