"""Starting a command for an exec request: checks, user, environment, pipes or a pty.

Everything the request could get wrong is checked here, before a process
exists, and refused with one sentence the host shows its user. The agent
creates the pipes itself rather than asking Popen for file objects, so it
alone owns the parent's ends and closes each exactly once.

This file runs inside the guest (Python 3.9+, standard library only).
"""

from __future__ import annotations

import os
import subprocess

if __package__:  # imported as bungalow.guest.* on the host
    from . import protocol
else:  # in the guest: a sibling file, not a package
    import protocol  # type: ignore[no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExecRefused(Exception):
    """The request cannot be run; becomes an error event with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Spawned:
    """A started command and the parent's ends of its stdio."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        outputs: dict[int, str],
        stdin_fd: int | None,
        tty: bool,
        timeout: float | None,
        kill_grace: float,
    ) -> None:
        self.proc = proc
        self.outputs = outputs  # fd -> the event type its bytes go out as
        self.stdin_fd = stdin_fd  # None when stdin is /dev/null
        self.tty = tty  # then stdin_fd is the pty master and also the only output
        self.timeout = timeout
        self.kill_grace = kill_grace


def spawn(request: dict[str, Any]) -> Spawned:
    """Start the command ``request`` asks for; ExecRefused or OSError if it cannot."""
    argv = request.get("argv")
    if not argv or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ExecRefused(protocol.ERR_INVALID, "The command must be a non-empty list of strings.")
    timeout = _seconds(request, "timeout")
    kill_grace = _seconds(request, "kill_grace")
    uid = gid = groups = None
    home, name = "/root", "root"
    if request.get("user") is not None:
        uid, gid, groups, home, name = resolve_user(request["user"])
    tty = bool(request.get("tty"))
    env = _environment(request.get("env"), home, name, tty)
    cwd = request.get("cwd") or (home if os.path.isdir(home) else "/")
    if not isinstance(cwd, str) or not os.path.isdir(cwd):
        raise ExecRefused(
            protocol.ERR_NOT_FOUND, f"The working directory {cwd} does not exist in the guest."
        )
    if tty:
        rows, cols = window_size(request.get("rows") or 24, request.get("cols") or 80)
        master, slave = os.openpty()
        set_window(slave, rows, cols)
        outputs = {master: protocol.EV_STDOUT}
        stdin_fd: int | None = master
        stdio = child_fds = [slave, slave, slave]
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        outputs = {out_r: protocol.EV_STDOUT, err_r: protocol.EV_STDERR}
        child_stdin, stdin_fd = os.pipe() if request.get("stdin") else (subprocess.DEVNULL, None)
        stdio = [child_stdin, out_w, err_w]
        child_fds = [fd for fd in stdio if fd >= 0]
    ours = set(outputs) if stdin_fd is None else {*outputs, stdin_fd}
    try:
        proc = subprocess.Popen(
            argv,
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group, for timeouts and signals
            user=uid,
            group=gid,
            extra_groups=groups,
            preexec_fn=_terminal_taker() if tty else None,
        )
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in set(child_fds):
            os.close(fd)
    for fd in ours:
        os.set_blocking(fd, False)
    grace = protocol.KILL_GRACE if kill_grace is None else kill_grace
    return Spawned(proc, outputs, stdin_fd, tty, timeout, grace)


def _seconds(request: dict[str, Any], key: str) -> float | None:
    value = request.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ExecRefused(protocol.ERR_INVALID, f"The {key} must be a number of seconds.")
    return float(value)


def _environment(extra: object, home: str, name: str, tty: bool) -> dict[str, str]:
    """A clean default environment with the request's variables on top."""
    env = {"PATH": DEFAULT_PATH, "HOME": home, "LANG": "C.UTF-8", "USER": name, "LOGNAME": name}
    if tty:
        env["TERM"] = "xterm-256color"
    if extra is None:
        return env
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
    ):
        raise ExecRefused(protocol.ERR_INVALID, "The environment must map names to strings.")
    env.update(extra)
    return env


def resolve_user(user: object) -> tuple[int, int, list[int], str, str]:
    """uid, gid, groups, home and name for ``user``, a name or a numeric uid."""
    import pwd

    if isinstance(user, bool) or not isinstance(user, (int, str)) or user == "":
        raise ExecRefused(protocol.ERR_INVALID, "The user must be a user name or a numeric uid.")
    numeric = isinstance(user, int) or user.isdigit()
    try:
        entry = pwd.getpwuid(int(user)) if numeric else pwd.getpwnam(str(user))
    except KeyError:
        if numeric:  # a bare uid with no passwd entry: its own group, no others
            return int(user), int(user), [], "/", str(user)
        raise ExecRefused(
            protocol.ERR_INVALID, f"There is no user {user!r} in the guest; create it first."
        ) from None
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return entry.pw_uid, entry.pw_gid, groups, entry.pw_dir, entry.pw_name


def window_size(rows: object, cols: object) -> tuple[int, int]:
    if (
        not isinstance(rows, int)
        or not isinstance(cols, int)
        or not (0 < rows < 65536 and 0 < cols < 65536)
    ):
        raise ExecRefused(protocol.ERR_INVALID, "The terminal size must be positive numbers.")
    return rows, cols


def set_window(fd: int, rows: int, cols: int) -> None:
    """Set a terminal's size; the kernel tells its foreground processes (SIGWINCH)."""
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _terminal_taker() -> Callable[[], None]:
    """What the child runs after setsid: make the pty on stdin its controlling terminal.

    Modules are imported here, in the parent: a child forked from a threaded
    process must not import anything.
    """
    import fcntl
    import termios

    ioctl, take = fcntl.ioctl, termios.TIOCSCTTY

    def take_terminal() -> None:
        ioctl(0, take, 0)

    return take_terminal
