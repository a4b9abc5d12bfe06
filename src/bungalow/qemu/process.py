"""Starting, watching and stopping QEMU processes.

QEMU runs daemonized with a pidfile so that it outlives the daemon that started
it: a restart of bungalowd reattaches to every VM instead of killing them. The
price is that the process is not our child, so a PID alone proves nothing (PIDs
are reused); :func:`pid_alive` also checks that the process's command line
names this VM's pidfile. A daemon that calls :func:`become_subreaper` gets its
QEMUs back as children, and :func:`wait_exit` and :func:`terminate` reap them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bungalow.arch import ARCH_INFO, DEFAULT_ARCH, Arch
from bungalow.errors import QemuError
from bungalow.host.processes import reap_exited_children
from bungalow.qemu import private_ram
from bungalow.qemu.argv import MachineSpec, RunFiles, build_argv
from bungalow.qemu.refusal import explain_refusal

LAUNCH_TIMEOUT = 30.0
KILL_TIMEOUT = 5.0
POLL_INTERVAL = 0.05
PR_SET_CHILD_SUBREAPER = 36


def find_qemu(arch: Arch = DEFAULT_ARCH) -> str:
    """The QEMU binary for ``arch`` guests on PATH (the daemon inherits the PATH of the
    command that started it); QemuError naming the Debian package when it is missing."""
    info = ARCH_INFO[arch]
    found = shutil.which(info.qemu_binary)
    if found is None:
        raise QemuError(
            f"{info.qemu_binary}, which runs {arch} guests, is not installed; install the "
            f"Debian package {info.qemu_package} (apt-get install {info.qemu_package}, or "
            "run the set-up command from the README)."
        )
    return found


@functools.cache
def qemu_version() -> str:
    """QEMU's own first line of ``--version``; a saved machine state only loads into the same."""
    try:
        binary = find_qemu()
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    except (QemuError, OSError):
        return "not installed"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def launch(
    spec: MachineSpec, *, qemu_binary: str | None = None, timeout: float = LAUNCH_TIMEOUT
) -> int:
    """Start QEMU for ``spec`` and return the PID of the daemonized process.

    QEMU's foreground process exits once the VM is set up (sockets bound, disk
    open), with status 0 or an error on stderr, so its exit is the moment the VM
    either runs or has been refused. On refusal every file QEMU left in the run
    directory is removed, except a console log from an earlier run.
    """
    argv = build_argv(spec, qemu_binary or find_qemu(spec.arch))
    files = RunFiles(spec.run_dir.absolute())
    running = read_pid(files.run_dir)
    if running is not None and pid_alive(running, files.run_dir):
        raise QemuError(
            f"QEMU is already running for VM {spec.name} as process {running}; stop it first."
        )
    files.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    had_console_log = files.console_log.exists()
    _remove(*files.sockets(), files.pidfile)  # left over from a run that ended uncleanly
    if spec.runas is not None:
        _prepare_root(files.run_dir)
    try:
        fds = tuple(nic.fd for nic in spec.nics if nic.fd is not None)
        # RAM mapped privately from a snapshot's file: no hole punched in it (private_ram.py).
        private = spec.memory_file is not None and not spec.memory_shared
        returncode = _run_foreground(
            argv, files, timeout, fds, private_ram.guard() if private else None
        )
    except QemuError:
        _discard(files, had_console_log)
        raise
    if returncode != 0:
        message = explain_refusal(_read_text(files.stderr), returncode)
        _discard(files, had_console_log)
        raise QemuError(message)
    pid = read_pid(files.run_dir)
    if pid is None or not pid_alive(pid, files.run_dir):
        detail = explain_refusal(_read_text(files.stderr), 0)
        _discard(files, had_console_log)
        raise QemuError(f"QEMU started and exited at once: {detail}")
    reap_daemonize_leftovers(keep=pid)
    return pid


def _prepare_root(run_dir: Path) -> None:
    """Make the run directory a root a confined QEMU can live in (``-chroot``).

    The user network reads the host's name servers from /etc/resolv.conf
    whenever the guest asks one, so a copy goes into the new root. The run
    directory itself becomes traversable but not listable: every other file
    in it is root's, and the directories above it stay closed.
    """
    etc = run_dir / "etc"
    etc.mkdir(mode=0o755, exist_ok=True)
    try:
        resolv = Path("/etc/resolv.conf").read_bytes()
    except OSError:
        resolv = b""
    target = etc / "resolv.conf"
    target.write_bytes(resolv)
    target.chmod(0o644)
    run_dir.chmod(0o711)


def reap_daemonize_leftovers(keep: int) -> None:
    """Collect the middle process of QEMU's double fork (``-daemonize``), never ``keep``
    (the VM itself, whose exit status matters)."""
    reap_exited_children("qemu-system", keep)


def _run_foreground(
    argv: list[str],
    files: RunFiles,
    timeout: float,
    pass_fds: tuple[int, ...] = (),
    preexec: Callable[[], None] | None = None,
) -> int:
    """Run QEMU's foreground process to its exit; its stderr lands in qemu.err.

    ``pass_fds`` (the NICs' TAPs) stay open in QEMU, through its daemonizing fork;
    ``preexec`` runs in the child before QEMU (a seccomp filter, which QEMU keeps).
    """
    try:
        with files.stderr.open("wb") as stderr:
            completed = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                timeout=timeout,
                start_new_session=True,
                pass_fds=pass_fds,
                preexec_fn=preexec,
                check=False,
            )
    except subprocess.TimeoutExpired:
        pid = read_pid(files.run_dir)
        if pid is not None and pid_alive(pid, files.run_dir):
            os.kill(pid, signal.SIGKILL)
            reap(pid)
        raise QemuError(
            f"QEMU did not finish starting within {timeout:.0f} s; the host may be "
            "overloaded, so try again."
        ) from None
    except OSError as error:
        raise QemuError(
            f"QEMU could not be run ({error.strerror}); reinstall it with apt-get install "
            "qemu-system-x86."
        ) from None
    return completed.returncode


def _discard(files: RunFiles, keep_console_log: bool) -> None:
    _remove(*files.sockets(), files.pidfile, files.stderr)
    if not keep_console_log:
        _remove(files.console_log)


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def read_pid(run_dir: Path) -> int | None:
    """The PID in the run directory's pidfile, or None when there is none."""
    try:
        return int(RunFiles(run_dir.absolute()).pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int, run_dir: Path) -> bool:
    """Whether ``pid`` is a live (not zombie) QEMU started for ``run_dir``.

    The pidfile path is a whole argument of that QEMU's command line, so a PID
    reused by any other process, QEMU or not, does not match.
    """
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X", "x"):
        return False
    pidfile = bytes(RunFiles(run_dir.absolute()).pidfile)
    return pidfile in cmdline.split(b"\0")


def _exists(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (which has already exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X", "x")


def become_subreaper() -> bool:
    """Adopt orphaned descendants, so daemonized QEMUs become our children.

    A daemon that does this is told when its QEMUs exit and can read their exit
    status; it must then reap them (:func:`reap`, :func:`wait_exit`,
    :func:`terminate` do), or they stay zombies. Returns False where the kernel
    refuses.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


def reap(pid: int) -> int | None:
    """Collect ``pid`` if it is our exited child; its exit code (negative: signal) or None.

    Only this PID is waited for, never any child: a ``waitpid(-1)`` would steal
    the exit status of processes that ``subprocess`` is waiting for.
    """
    try:
        waited, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if waited == pid else None


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``; None when the process is gone or pidfds are unavailable."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


async def wait_exit(pid: int) -> int | None:
    """Return when ``pid`` has exited; its exit code when it was our child, else None.

    A pidfd becomes readable when the process exits, so this costs nothing while
    the VM runs; kernels without pidfds (before 5.3) fall back to polling.
    """
    pidfd = _open_pidfd(pid)
    if pidfd is None:
        while _exists(pid):
            await asyncio.sleep(POLL_INTERVAL * 4)
        return reap(pid)
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return reap(pid)


def terminate(pid: int, run_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the QEMU of ``run_dir``: SIGTERM, then SIGKILL after ``timeout`` seconds.

    SIGTERM makes QEMU flush and close its disks before exiting, which keeps the
    qcow2 overlay clean; a guest that should shut itself down gets a QMP
    ``system_powerdown`` first (see ``monitor.py``). Returns True if SIGKILL was
    needed. Blocks for up to ``timeout`` seconds: call it in a thread from async
    code.
    """
    pidfd = _open_pidfd(pid)
    try:
        if not pid_alive(pid, run_dir):  # checked after opening the pidfd: no PID-reuse race
            reap(pid)
            return False
        _signal(pid, pidfd, signal.SIGTERM)
        if _wait_gone(pid, pidfd, timeout):
            return False
        _signal(pid, pidfd, signal.SIGKILL)
        if not _wait_gone(pid, pidfd, KILL_TIMEOUT):
            raise QemuError(
                f"QEMU process {pid} did not die after SIGKILL; it is stuck in the kernel, "
                "so check the host's logs."
            )
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)
        reap(pid)


def _signal(pid: int, pidfd: int | None, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)


def _wait_gone(pid: int, pidfd: int | None, timeout: float) -> bool:
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    deadline = time.monotonic() + timeout
    while _exists(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True
