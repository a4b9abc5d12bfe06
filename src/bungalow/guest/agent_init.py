"""PID 1 of a bungalow guest: finish the boot, keep the agent alive, power off.

The initramfs mounted /proc, /sys, /dev and /run and switched to the root
disk; what is left is cheap enough to do here instead of in a shell script:
the pseudo-terminal and tmpfs mounts, growing the root file system when the
VM's disk was enlarged, and the two duties of any init -- reaping orphans
and shutting down cleanly on SIGTERM/SIGINT. The agent server runs in a
forked child, so a crash in it costs a respawn, never a kernel panic.

Run inside a PID namespace (as the tests do, with ``unshare --pid``), the
steps that would touch the host's disks -- resize2fs and remounting the root
read-only -- are skipped, and reboot(2) only ends the namespace.

This file runs inside the guest (Python 3.9+, standard library only).
"""

from __future__ import annotations

import os
import signal
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Callable

ROOT_DEVICE = "/dev/vda"
#: The inode number of the initial PID namespace (PROC_PID_INIT_INO in the kernel).
_INIT_PID_NS = 0xEFFFFFFC
_LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_GROW_THRESHOLD = 1 << 20  # ignore a disk that is barely larger than its file system
_TERM_GRACE = 3.0  # seconds processes get between SIGTERM and SIGKILL at power-off

_MOUNTS = (  # (type, mount point, flags, options, mode of the mount point)
    ("devpts", "/dev/pts", _MS_NOSUID | _MS_NOEXEC, "gid=5,mode=620,ptmxmode=666", 0o755),
    ("tmpfs", "/dev/shm", _MS_NOSUID | _MS_NODEV, "mode=1777", 0o1777),
    ("tmpfs", "/tmp", _MS_NOSUID | _MS_NODEV, "mode=1777", 0o1777),
)
_DEV_LINKS = (
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
)


class _PowerOff(Exception):
    """Raised from the SIGTERM/SIGINT handler into the reaping loop."""


def log(text: str) -> None:
    """A line on the console; PID 1's stderr is the console."""
    try:  # noqa: SIM105 - contextlib would cost start time
        os.write(2, f"bungalow-agent: {text}\n".encode())
    except OSError:
        pass


def is_real_init() -> bool:
    """True for the machine's own init; False for PID 1 of a PID namespace."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino == _INIT_PID_NS
    except OSError:
        return False


def run(serve: Callable[[], int]) -> None:
    """Be PID 1 forever: ``serve`` runs the agent server in a child process."""
    if os.getpid() != 1:
        sys.exit("bungalow-agent: --init must run as PID 1; leave it out to run only the server.")
    os.environ.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")

    def power_off_handler(signum: int, frame: object) -> None:
        raise _PowerOff()

    signal.signal(signal.SIGTERM, power_off_handler)
    signal.signal(signal.SIGINT, power_off_handler)
    real = is_real_init()
    try:
        _mount_basics()  # first: a tty exec needs /dev/pts from the first request on
        server = _start_server(serve)
        grower = grow_root() if real else None
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:  # cannot happen while the server lives; be safe
                time.sleep(1.0)
                continue
            if pid == server:
                log(f"the agent server ended ({_describe(status)}); restarting it")
                time.sleep(0.5)
                server = _start_server(serve)
            elif pid == grower and status != 0:
                log(f"growing the root file system failed ({_describe(status)})")
    except _PowerOff:
        _power_off(real)


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"exit status {code}" if code >= 0 else f"signal {-code}"


def _start_server(serve: Callable[[], int]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = serve()
        except BaseException as exc:
            log(f"the agent server failed: {exc!r}")
        finally:
            os._exit(code)
    return pid


def _libc() -> ctypes.CDLL:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    libc.reboot.argtypes = [ctypes.c_int]
    return libc


def _mount(libc: ctypes.CDLL, fstype: str, target: str, flags: int, options: str | None) -> None:
    import ctypes

    source = fstype.encode()
    data = options.encode() if options is not None else None
    if libc.mount(source, target.encode(), source, flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def _mounted() -> set[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return {line.split()[4] for line in mountinfo}


def _mount_basics() -> None:
    """devpts for terminals, tmpfs for /dev/shm and /tmp, and the /dev/fd links."""
    try:
        libc = _libc()
        mounted = _mounted()
    except OSError as exc:
        log(f"cannot mount the basics: {exc}")
        return
    for fstype, target, flags, options, mode in _MOUNTS:
        if target in mounted:
            continue
        try:
            os.makedirs(target, mode=mode, exist_ok=True)
            _mount(libc, fstype, target, flags, options)
        except OSError as exc:
            log(f"cannot mount {fstype} on {target}: {exc.strerror}")
    for link, target in _DEV_LINKS:
        if not os.path.lexists(link):
            try:  # noqa: SIM105 - contextlib would cost start time
                os.symlink(target, link)
            except OSError:
                pass


def _ext4_size(device: str) -> tuple[int, int] | None:
    """(device bytes, file system bytes) when ``device`` holds ext2/3/4, else None."""
    import struct

    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        device_size = os.lseek(fd, 0, os.SEEK_END)
        sb = os.pread(fd, 1024, 1024)
    finally:
        os.close(fd)
    if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != 0xEF53:
        return None
    blocks = struct.unpack_from("<I", sb, 0x04)[0]
    block_size = 1024 << struct.unpack_from("<I", sb, 0x18)[0]
    if struct.unpack_from("<I", sb, 0x60)[0] & 0x80:  # INCOMPAT_64BIT: a high word too
        blocks |= struct.unpack_from("<I", sb, 0x150)[0] << 32
    return device_size, blocks * block_size


def grow_root(device: str = ROOT_DEVICE) -> int | None:
    """Start resize2fs when the root disk outgrew its file system; its pid, or None."""
    try:
        if os.stat("/").st_dev != os.stat(device).st_rdev:
            return None  # the root is not on that disk: not ours to grow
        sizes = _ext4_size(device)
    except OSError:
        return None
    if sizes is None or sizes[0] - sizes[1] < _GROW_THRESHOLD:
        return None
    log(f"growing the root file system from {sizes[1] >> 20} MiB to {sizes[0] >> 20} MiB")
    try:
        devnull = os.open("/dev/null", os.O_WRONLY)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, devnull, 1)]
            return os.posix_spawnp(
                "resize2fs", ["resize2fs", device], dict(os.environ), file_actions=actions
            )
        finally:
            os.close(devnull)
    except OSError as exc:
        log(f"cannot run resize2fs: {exc.strerror}")
        return None


def _power_off(real: bool) -> None:
    """End every process, flush and freeze the disk, and turn the machine off."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log("powering off")
    for signum, grace in ((signal.SIGTERM, _TERM_GRACE), (signal.SIGKILL, 1.0)):
        try:
            os.kill(-1, signum)  # everyone but PID 1
        except ProcessLookupError:
            break
        _reap_all(time.monotonic() + grace)
    os.sync()
    libc = _libc()
    if real:
        try:
            _mount(libc, "", "/", _MS_REMOUNT | _MS_RDONLY, None)
        except OSError as exc:
            log(f"cannot make the root read-only: {exc.strerror}")
        os.sync()
    libc.reboot(_LINUX_REBOOT_CMD_POWER_OFF)
    log("power-off failed; exiting, which panics the kernel and stops the VM")
    os._exit(1)


def _reap_all(deadline: float) -> None:
    """Reap children until there are none left or the deadline passes."""
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)
