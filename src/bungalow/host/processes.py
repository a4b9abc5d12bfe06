"""Finding and ending the processes bungalowd started, from /proc alone.

Every long-lived process the daemon starts (a VM's QEMU, a snapshot's
converter QEMU, a VM's network shaper and swtpm, a network's dnsmasq) runs detached and
names its own pidfile on its command line (``-pidfile PATH``, ``--pidfile PATH``,
``--pid-file=PATH`` or swtpm's ``--pid file=PATH``), and that
pidfile lives in the run directory of what it belongs to. So a daemon that
starts after a crash finds every one of them by reading ``/proc/*/cmdline``,
whatever the database or the pidfiles say (libvirt's promise that a VM
outlives its manager, kept in the other direction: nothing outlives it
unknown). The pidfile argument also guards against PID reuse: a process is
ended only while its command line still names that pidfile.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from bungalow.errors import QemuError

#: The command-line options that name a pidfile: QEMU's and the network shaper's.
_PIDFILE_OPTIONS = (b"-pidfile", b"--pidfile")
#: dnsmasq's, whose argument is optional and so given in the same word.
_PIDFILE_PREFIX = b"--pid-file="
#: swtpm's: ``--pid file=PATH`` (or ``fd=N``, which bungalow never uses).
_SWTPM_PID = (b"--pid", b"file=")
#: Seconds a process gets to exit on SIGTERM (QEMU flushes its disks) before SIGKILL.
TERM_TIMEOUT = 5.0
KILL_TIMEOUT = 5.0
#: Rounds of finding and ending: a process being started may fork between two looks.
ROUNDS = 5


@dataclass(frozen=True)
class HostProcess:
    """A live process that names ``pidfile``; ``program`` is its argv[0]'s base name."""

    pid: int
    pidfile: Path
    program: str

    @property
    def run_dir(self) -> Path:
        """The directory it belongs to: its pidfile's."""
        return self.pidfile.parent

    @property
    def is_qemu(self) -> bool:
        return self.program.startswith("qemu-system")


def _pidfile_of(argv: list[bytes]) -> Path | None:
    for index, arg in enumerate(argv[:-1]):
        if arg in _PIDFILE_OPTIONS:
            return Path(os.fsdecode(argv[index + 1]))
        if arg.startswith(_PIDFILE_PREFIX):
            return Path(os.fsdecode(arg.removeprefix(_PIDFILE_PREFIX)))
        following = argv[index + 1]
        if arg == _SWTPM_PID[0] and following.startswith(_SWTPM_PID[1]):
            return Path(os.fsdecode(following.removeprefix(_SWTPM_PID[1]).split(b",")[0]))
    return None


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return "?"


def _read(pid: int) -> HostProcess | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    pidfile = _pidfile_of(argv)
    if pidfile is None or _state(pid) in ("Z", "X", "x", "?"):
        return None
    return HostProcess(pid, pidfile, os.path.basename(os.fsdecode(argv[0])))


def under(root: Path) -> list[HostProcess]:
    """Every live process whose pidfile lies inside ``root`` (any depth), by PID.

    Blocks for a read of /proc (a few milliseconds): call it in a thread from async code.
    """
    prefix = str(root.absolute()).rstrip("/") + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        process = _read(int(entry.name))
        if process is not None and str(process.pidfile).startswith(prefix):
            found.append(process)
    return sorted(found, key=lambda p: p.pid)


def end(process: HostProcess, timeout: float = TERM_TIMEOUT) -> bool:
    """SIGTERM ``process``, SIGKILL after ``timeout`` s; True once it is gone.

    Nothing is sent unless the PID still names the same pidfile (checked with a
    pidfd held, so a reused PID is never hit). An exited child of ours is
    reaped. Blocks up to ``timeout`` + 5 s.
    """
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:
        return True  # already gone
    try:
        current = _read(process.pid)
        if current is None or current.pidfile != process.pidfile:
            return True
        for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_TIMEOUT)):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signum)
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if poller.poll(wait * 1000):
                return True
        return False
    finally:
        os.close(pidfd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process.pid, os.WNOHANG)


def end_all(root: Path, timeout: float = TERM_TIMEOUT) -> list[HostProcess]:
    """End every process whose pidfile lies inside ``root``, looking again until none is
    left; the processes ended. Blocks (see :func:`end`)."""
    ended: list[HostProcess] = []
    for _ in range(ROUNDS):
        found = under(root)
        if not found:
            return ended
        for process in found:
            end(process, timeout)
            ended.append(process)
        time.sleep(0.05)
    left = under(root)
    if left:
        pids = ", ".join(str(p.pid) for p in left)
        raise QemuError(
            f"Processes {pids} of {root} did not end after SIGKILL; they are stuck in the "
            "kernel, so check the host's logs."
        )
    return ended


def reap_exited_children(program: str, keep: int = 0) -> list[int]:
    """Collect our exited children whose name starts with ``program``, never ``keep``; the
    PIDs collected.

    A program that daemonizes itself (QEMU's ``-daemonize``, dnsmasq) forks twice; the
    middle process exits at once and, in a subreaper such as bungalowd, becomes our
    zombie child. Only those are waited for, by PID: a ``waitpid(-1)`` would steal the
    exit status of a child someone else waits on.
    """
    me = str(os.getpid())
    reaped = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == keep:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z" and fields[1] == me and comm.startswith(program):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry.name), os.WNOHANG)
                reaped.append(int(entry.name))
    return reaped
