"""The names of one daemon's kernel objects.

Several daemons may run on one host (tests run many at once), each owning only
what carries its own tag: a short hash of its data directory. The nft table of
the daemon of the default data directory is ``bungalow``; any other daemon's is
``bungalow-<tag>``. Bridges are ``bgl<tag><network id>``: interface names hold 15
characters at most (``IFNAMSIZ`` - 1), so a tag of 5 leaves 7 digits for the id.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

#: The Linux limit on an interface name's length (IFNAMSIZ - 1).
IFNAME_MAX = 15
_TAG_LENGTH = 5


@dataclass(frozen=True)
class HostNames:
    """How the daemon serving ``root`` names its bridges and nft table."""

    root: Path

    @property
    def tag(self) -> str:
        """Five hex digits of the SHA-256 of the data directory's absolute path."""
        return hashlib.sha256(str(self.root.absolute()).encode()).hexdigest()[:_TAG_LENGTH]

    @property
    def table(self) -> str:
        """The daemon's nft table (family ``inet``)."""
        if self.root.absolute() == default_home_without_env():
            return "bungalow"
        return f"bungalow-{self.tag}"

    @property
    def bridge_prefix(self) -> str:
        """What every bridge of this daemon's starts with (and no other daemon's)."""
        return f"bgl{self.tag}"

    def bridge(self, network_id: int) -> str:
        """The bridge of network ``network_id``; ValueError past 7 digits."""
        name = f"{self.bridge_prefix}{network_id}"
        if len(name) > IFNAME_MAX:
            raise ValueError(f"network id {network_id} makes a bridge name over 15 characters")
        return name

    def owns_bridge(self, ifname: str) -> bool:
        rest = ifname.removeprefix(self.bridge_prefix)
        return rest != ifname and rest.isdigit()

    def hosts_marker(self) -> str:
        """What marks this daemon's block in /etc/hosts: its data directory."""
        return f"bungalow {self.root.absolute()}"


def default_home_without_env() -> Path:
    """The data directory a daemon uses when ``$BUNGALOW_HOME`` is not set."""
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).absolute() / "bungalow"
