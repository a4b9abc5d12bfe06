"""``bungalowd``: one daemon per data directory, serving the API on an owner-only socket.

Start-up order matters: take the data directory's lock (a second daemon exits
quietly), probe the host, open (and migrate) the database, and bind the
socket; uvicorn answers only once the lifespan has recovered every VM and
process an earlier daemon left (server/wiring.py), so a client never sees a
half-ready daemon.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import socket
import sys
from pathlib import Path

import uvicorn

from bungalow.daemon.server.config import load_config
from bungalow.daemon.server.wiring import app_for, build
from bungalow.daemon.vms.host import HostFacts
from bungalow.errors import BungalowError, UserError
from bungalow.paths import DataDir
from bungalow.qemu.process import become_subreaper

log = logging.getLogger("bungalowd")


def _take_lock(data: DataDir) -> int | None:
    """The data directory's lock, held for the daemon's life; None if another daemon has it."""
    fd = os.open(data.root / "bungalowd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.set_inheritable(fd, False)
    return fd


def _owner_only_socket(path: Path) -> socket.socket:
    """Bind the API socket ourselves: uvicorn would make a path socket world-writable."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask is changed only around bind, before any thread exists: the daemon
    # also builds images, whose files must keep ordinary permissions.
    previous = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    listener.listen(128)
    return listener


def serve(data: DataDir) -> int:
    data.ensure()
    lock = _take_lock(data)
    if lock is None:
        print(f"bungalowd is already running for {data.root}.", file=sys.stderr)
        return 0
    logging.basicConfig(
        filename=data.daemon_log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("qemu.qmp", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_config(data.config)
    except UserError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    become_subreaper()
    data.daemon_pidfile.write_text(f"{os.getpid()}\n")
    # Probing KVM and asking QEMU its version block for seconds: done before the loop runs.
    host = HostFacts.gather()
    try:
        daemon = build(data, settings, host)
    except BungalowError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    listener = _owner_only_socket(data.socket)
    config = uvicorn.Config(
        app_for(daemon),
        fd=listener.fileno(),
        log_level="warning",
        log_config=None,
        timeout_graceful_shutdown=3,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        with contextlib.suppress(FileNotFoundError):
            data.socket.unlink()
        with contextlib.suppress(FileNotFoundError):
            data.daemon_pidfile.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bungalowd", description=__doc__)
    parser.add_argument("--home", type=Path, help="data directory (default: $BUNGALOW_HOME)")
    args = parser.parse_args(argv)
    data = DataDir(args.home.absolute()) if args.home else DataDir.from_env()
    return serve(data)


if __name__ == "__main__":
    sys.exit(main())
