"""What ``bungalow ssh`` needs to know of a guest, in one exec: is there an SSH server,
does it listen, and its host keys (for the CLI's known_hosts).

Run inside the guest as ``python3 -S -c SOURCE``; prints one JSON object::

    {"sshd": true, "listening": true, "host_keys": ["ssh-ed25519 AAAA... root@web", ...]}

Standard library only.
"""

from __future__ import annotations

import glob
import json
import os
import socket

SSHD = ("/usr/sbin/sshd", "/usr/bin/sshd", "/usr/bin/dropbear", "/usr/sbin/dropbear")


def probe() -> dict[str, object]:
    try:
        socket.create_connection(("127.0.0.1", 22), timeout=3).close()
        listening = True
    except OSError:
        listening = False
    keys = []
    for path in sorted(glob.glob("/etc/ssh/ssh_host_*_key.pub")):
        try:
            with open(path) as handle:
                keys.append(handle.read().strip())
        except OSError:
            continue
    return {
        "sshd": any(os.path.exists(path) for path in SSHD),
        "listening": listening,
        "host_keys": keys,
    }


if __name__ == "__main__":
    print(json.dumps(probe()))
