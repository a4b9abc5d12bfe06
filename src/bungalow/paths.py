"""Where bungalow keeps its files.

The data directory is ``$BUNGALOW_HOME``, else ``$XDG_DATA_HOME/bungalow``, else
``~/.local/share/bungalow``. Images live in ``$BUNGALOW_IMAGES`` when it is set,
so that several data directories (tests, for one) can share one immutable store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bungalow.names import validate_option_path


def default_home() -> Path:
    if env := os.environ.get("BUNGALOW_HOME"):
        return Path(env).absolute()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).absolute() / "bungalow"


@dataclass(frozen=True)
class DataDir:
    """The layout of one data directory; creates nothing until :meth:`ensure` is called."""

    root: Path

    @classmethod
    def from_env(cls) -> DataDir:
        return cls(default_home())

    @property
    def images(self) -> Path:
        env = os.environ.get("BUNGALOW_IMAGES")
        return Path(env).absolute() if env else self.root / "images"

    @property
    def vms(self) -> Path:
        return self.root / "vms"

    @property
    def database(self) -> Path:
        return self.root / "bungalow.db"

    @property
    def socket(self) -> Path:
        return self.root / "bungalowd.sock"

    @property
    def daemon_log(self) -> Path:
        return self.root / "bungalowd.log"

    @property
    def daemon_pidfile(self) -> Path:
        return self.root / "bungalowd.pid"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def snapshot_dir(self, snapshot_id: str) -> Path:
        return self.snapshots / snapshot_id

    def vm_dir(self, vm_id: str) -> Path:
        return self.vms / vm_id

    def ensure(self) -> None:
        validate_option_path(str(self.root), what="data directory")
        for path in (self.root, self.vms, self.images, self.snapshots):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Confined QEMUs (host/jail.py) must not reach other VMs' files or the socket.
        for path in (self.root, self.vms, self.snapshots):
            path.chmod(0o700)
