"""Whether a host port is free, asked the only reliable way: by trying to bind it.

QEMU reports a taken port only as "Could not set up host forwarding rule", after
it has started; checking first lets the daemon refuse with a clear conflict.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import Literal

from bungalow.errors import UserError


def port_in_use(addr: str, port: int, proto: Literal["tcp", "udp"] = "tcp") -> bool:
    """Whether ``addr:port`` cannot be bound for ``proto`` right now.

    TCP is bound with SO_REUSEADDR, as QEMU's user-mode network (libslirp) binds
    its forwards, so a port held only by connections in TIME_WAIT counts as free,
    just as it is for QEMU.
    """
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with contextlib.closing(socket.socket(socket.AF_INET, kind)) as probe:
        if proto == "tcp":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((addr, port))
        except OSError as error:
            if error.errno == errno.EADDRNOTAVAIL:
                raise UserError(
                    f"{addr} is not an address of this host, so nothing can listen on it; "
                    f"forward from 127.0.0.1, 0.0.0.0 or one of this host's addresses."
                ) from None
            return True
    return False
