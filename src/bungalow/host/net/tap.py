"""TAP devices a VM's NICs send their frames through, opened by the daemon for QEMU.

Each NIC of a VM on a private network is a TAP on that network's bridge. The
daemon (root) opens it through ``/dev/net/tun`` (``TUNSETIFF``), puts it on the
bridge and up, and hands the descriptor to QEMU (``-netdev tap,fd=N`` at start,
QMP ``getfd`` when hot-plugged), then closes its own copy. The TAP is not
persistent (no ``TUNSETPERSIST``): the kernel removes it when the last
descriptor closes, that is when its QEMU exits, however it exits, so a killed
QEMU or daemon leaves no TAP behind and a later daemon has nothing to adopt.

``IFF_VNET_HDR`` lets QEMU pass checksum and segmentation offloads through the
virtio-net header (QEMU probes the flag on the descriptor it is given), which
is what keeps VM-to-VM TCP on a bridge fast.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from bungalow.errors import BungalowError, UserError

TUN_PATH = "/dev/net/tun"
#: linux/if_tun.h
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFNAMSIZ = 16
#: Every TAP bungalow names starts with this; the rest is the VM's id and the NIC's index.
TAP_PREFIX = "bt"
#: A snapshot's converter's TAPs (on no bridge: that QEMU never runs its guest).
CONVERTER_PREFIX = "bs"


def tap_name(vm_id: str, index: int, prefix: str = TAP_PREFIX) -> str:
    """``bt`` + the VM's id (12 hex digits) + the NIC's index (0-9): 15 bytes, IFNAMSIZ - 1.

    UserError for an index a name cannot hold (a VM has at most 10 NICs).
    """
    if not 0 <= index <= 9:
        raise UserError(f"A VM has at most 10 network interfaces; NIC {index} is one too many.")
    name = f"{prefix}{vm_id}{index}"
    if len(name) >= IFNAMSIZ:
        raise ValueError(f"the TAP name {name!r} is longer than {IFNAMSIZ - 1} bytes")
    return name


@dataclass
class Tap:
    """An open TAP: its interface name and the daemon's descriptor for it (close it once
    QEMU has its own copy, see :func:`opened`)."""

    name: str
    fd: int

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_tap(name: str, bridge: str | None) -> Tap:
    """Make the TAP ``name``, enslave it to ``bridge`` (None: leave it on none, down) and
    set it up; the open TAP.

    BungalowError (a 500: the host's fault or the daemon's, not input) with a
    sentence when the kernel refuses (no tun module, no bridge, a name in use);
    nothing is left behind then, since closing the descriptor removes the TAP.
    """
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise BungalowError(
            f"Cannot open {TUN_PATH} ({exc.strerror}); the host needs the tun module "
            "(modprobe tun) and bungalowd must run as root for private networks."
        ) from None
    tap = Tap(name=name, fd=fd)
    try:
        ifreq = struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        try:
            fcntl.ioctl(fd, TUNSETIFF, ifreq)
        except OSError as exc:
            reason = "a device of that name exists" if exc.errno == errno.EBUSY else exc.strerror
            raise BungalowError(f"Cannot make the TAP {name} ({reason}).") from None
        if bridge is not None:
            _enslave(name, bridge)
    except BaseException:
        tap.close()
        raise
    return tap


def _enslave(name: str, bridge: str) -> None:
    with IPRoute() as ipr:
        try:
            (master,) = ipr.link_lookup(ifname=bridge) or (None,)
            if master is None:
                raise BungalowError(
                    f"The bridge {bridge} of this network does not exist; "
                    "run `bungalow network ls` to have bungalowd make it again."
                )
            (index,) = ipr.link_lookup(ifname=name)
            ipr.link("set", index=index, master=master, state="up")
        except NetlinkError as exc:
            raise BungalowError(
                f"Cannot put the TAP {name} on the bridge {bridge} ({exc})."
            ) from None


def open_all(pairs: list[tuple[str, str | None]]) -> list[Tap]:
    """Open a TAP per ``(name, bridge)``, all or none; close each once QEMU has its own
    copy (the TAPs live on with the copies QEMU inherited or was sent)."""
    taps: list[Tap] = []
    try:
        for name, bridge in pairs:
            taps.append(open_tap(name, bridge))
    except BaseException:
        for opened in taps:
            opened.close()
        raise
    return taps


def rejoin(name: str, bridge: str) -> bool:
    """Put the existing TAP ``name`` back on ``bridge`` if it is on no bridge or another
    (its bridge was deleted and made again); True if it moved. A TAP that is gone (its
    QEMU ended) is left alone. Raises BungalowError if the bridge is missing."""
    if not exists(name):
        return False
    master = (
        os.path.realpath(f"/sys/class/net/{name}/master")
        if os.path.exists(f"/sys/class/net/{name}/master")
        else ""
    )
    if os.path.basename(master) == bridge:
        return False
    _enslave(name, bridge)
    return True


def exists(name: str) -> bool:
    """Whether a network interface ``name`` exists on the host (from /sys)."""
    return os.path.exists(f"/sys/class/net/{name}")
