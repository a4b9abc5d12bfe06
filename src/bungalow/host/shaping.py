"""Starting, re-rating and stopping a VM's network shaper (the process is ``netshaper.py``).

The shaper runs detached with a pidfile, like QEMU, so it outlives a restart of
bungalowd; its files live in the VM's run directory next to QEMU's. A PID alone
proves nothing (PIDs are reused), so :func:`shaper_pid` also checks that the
process's command line names this run directory's shaper pidfile.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bungalow.errors import QemuError

MODULE = "bungalow.host.netshaper"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 2.0


@dataclass(frozen=True)
class ShaperFiles:
    """The shaper's own files in a VM's run directory."""

    run_dir: Path

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "netshaper.pid"

    @property
    def rate(self) -> Path:
        return self.run_dir / "net-bw"

    @property
    def log(self) -> Path:
        return self.run_dir / "netshaper.log"

    def all(self) -> tuple[Path, ...]:
        return (self.pidfile, self.rate, self.log)


def write_rate(run_dir: Path, rate: int | None) -> None:
    """Put ``rate`` (bytes per second; None: unlimited) where the shaper reads it."""
    path = ShaperFiles(run_dir.absolute()).rate
    staged = path.with_name(path.name + ".new")
    staged.write_text(f"{rate or 0}\n")
    os.replace(staged, path)


def start_shaper(run_dir: Path, nic: Path, wan: Path, rate: int | None) -> int:
    """Start the shaper between QEMU's sockets ``nic`` and ``wan``; its PID once connected.

    Blocks until the shaper has connected to both (QEMU must already listen):
    call it in a thread from async code.
    """
    files = ShaperFiles(run_dir.absolute())
    write_rate(files.run_dir, rate)
    files.pidfile.unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", MODULE,
        "--nic", str(nic.absolute()), "--wan", str(wan.absolute()),
        "--rate-file", str(files.rate), "--pidfile", str(files.pidfile), "--log", str(files.log),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            start_new_session=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise QemuError(
            f"The network shaper did not start within {START_TIMEOUT:.0f} s; the host may be "
            "overloaded, so try again."
        ) from None
    pid = shaper_pid(files.run_dir)
    if done.returncode != 0 or pid is None:
        lines = (done.stderr or "").strip().splitlines() or ["it exited without a message"]
        raise QemuError(f"The network shaper could not start ({lines[-1]}); try again.")
    return pid


def shaper_pid(run_dir: Path) -> int | None:
    """The PID of the live shaper of ``run_dir``, or None."""
    pidfile = ShaperFiles(run_dir.absolute()).pidfile
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if _state(pid) in ("Z", "X", "x", "?"):
        return None
    return pid if MODULE.encode() in cmdline and bytes(pidfile) in cmdline else None


def set_shaper_rate(run_dir: Path, rate: int | None) -> bool:
    """Change a running shaper's rate at once; False when no shaper runs for ``run_dir``."""
    write_rate(run_dir, rate)
    pid = shaper_pid(run_dir)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGHUP)
    return True


def stop_shaper(run_dir: Path) -> None:
    """End the shaper of ``run_dir`` if one runs, collect it, and remove its files.

    A shaper ends by itself once its QEMU is gone; this makes sure, and reaps it
    (SIGTERM, then SIGKILL after a moment; blocks up to a few seconds at worst).
    """
    files = ShaperFiles(run_dir.absolute())
    pid = _recorded_pid(files.pidfile)
    if pid is not None:
        _end(pid, files.run_dir)
    for path in files.all():
        path.unlink(missing_ok=True)


def _recorded_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _end(pid: int, run_dir: Path) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if shaper_pid(run_dir) == pid:  # checked with the pidfd open: no PID-reuse race
            for signum in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, signum)
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                if poller.poll(STOP_TIMEOUT * 1000):
                    break
        elif _state(pid) != "Z":
            return  # not the shaper, nor what is left of one
        reap_shaper(pid)
    finally:
        os.close(pidfd)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return "?"


def reap_shaper(pid: int) -> None:
    """Collect an exited shaper if it is our child (bungalowd is a subreaper)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
