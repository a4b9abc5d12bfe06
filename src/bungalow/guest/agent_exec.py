"""One command run for the host: spawn it, stream its output, feed it, time it out.

Each exec gets one pump thread that waits in poll() on the command's output,
its stdin, a wake-up pipe and its timers, so output goes to the host the moment
the command writes it. Output is read only while the host has granted credit
(see protocol.WINDOW): a host that stops reading stalls this command's pipes
and the command blocks in write(), as on a slow terminal, instead of the agent
buffering without bound. A second small thread only waits for the process to
exit, since not every guest kernel and Python we support has pidfds.

This file runs inside the guest (Python 3.9+, standard library only).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import threading
import time

if __package__:  # imported as bungalow.guest.* on the host
    from . import protocol
    from .agent_spawn import ExecRefused, Spawned, set_window, spawn, window_size
else:  # in the guest: sibling files, not a package
    import protocol  # type: ignore[no-redef]
    from agent_spawn import (  # type: ignore[no-redef]
        ExecRefused,
        Spawned,
        set_window,
        spawn,
        window_size,
    )

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from typing import Any

    Send = Callable[[dict[str, Any]], None]

#: How long output may keep flowing after the command exited, from background
#: processes that inherited its stdout, before the exit is reported regardless.
EXIT_LINGER = 0.5
_EOT = b"\x04"  # closing stdin on a terminal: end of input, as Ctrl-D types it
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR


def _killpg(pgid: int, signum: int) -> None:
    with contextlib.suppress(OSError):  # gone already, or a signal number that is not one
        os.killpg(pgid, signum)


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


class ExecSession:
    """One exec: the reader thread records what the host sends, the pump thread acts."""

    def __init__(self, request: dict[str, Any], send: Send, forget: Callable[[int], None]):
        self.id: int = request["id"]
        self._request = request
        self._send = send
        self._forget = forget
        self._lock = threading.Lock()  # guards the fields below and the wake pipe
        self._done = False
        self._unacked = 0  # output bytes sent to the host and not yet acknowledged
        self._stdin = bytearray()  # host bytes not yet written to the command
        self._stdin_closing = False
        self._cancelled = False
        self._controls: list[tuple[str, int, int]] = []  # signals and resizes, in order
        self._returncode: int | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"exec-{self.id}", daemon=True).start()

    def handle(self, message: dict[str, Any]) -> None:
        """A stdin, stdin_close, ack, signal or resize for this exec (reader thread)."""
        op = message.get("op")
        with self._lock:
            if self._done:
                return
            if op == protocol.OP_STDIN:
                self._stdin += protocol.decode_data(message)
            elif op == protocol.OP_STDIN_CLOSE:
                self._stdin_closing = True
            elif op == protocol.OP_ACK:
                self._unacked -= int(message.get("bytes", 0))
            elif op == protocol.OP_SIGNAL and isinstance(message.get("sig"), int):
                self._controls.append(("signal", message["sig"], 0))
            elif op == protocol.OP_RESIZE:
                try:
                    rows, cols = window_size(message.get("rows"), message.get("cols"))
                except ExecRefused:
                    return  # the host checks sizes; a bad one is not worth ending the exec
                self._controls.append(("resize", rows, cols))
            self._wake()

    def cancel(self) -> None:
        """The host gave up on this exec: end the command, drop its output."""
        with self._lock:
            self._cancelled = True
            if not self._done:
                self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def _run(self) -> None:
        try:
            spawned = spawn(self._request)
        except ExecRefused as exc:
            self._finish()
            self._send(protocol.error(self.id, exc.code, exc.message))
            return
        except OSError as exc:
            self._finish()
            self._report_unrunnable(exc)
            return
        except Exception as exc:
            self._finish()
            self._send(protocol.error(self.id, protocol.ERR_FAILED, f"The exec failed: {exc}."))
            return
        pid = spawned.proc.pid
        self._send(protocol.event(protocol.EV_STARTED, self.id, pid=pid))
        threading.Thread(target=self._wait, args=(spawned.proc,), daemon=True).start()
        pump = _Pump(self, spawned)
        try:
            timed_out = pump.run()
        except Exception as exc:
            _killpg(pid, signal.SIGKILL)
            self._send(protocol.error(self.id, protocol.ERR_FAILED, f"The exec failed: {exc}."))
            return
        finally:
            pump.close()
            self._finish()
        code = self._returncode if self._returncode is not None else -signal.SIGKILL
        fields = {"code": None, "signal": -code, "timed_out": timed_out}
        if code >= 0:
            fields.update(code=code, signal=None)
        self._send(protocol.event(protocol.EV_EXIT, self.id, **fields))

    def _report_unrunnable(self, exc: OSError) -> None:
        """Tell the host the command could not start, the way a shell would."""
        name = self._request["argv"][0]
        if exc.errno == errno.ENOENT:
            code, text = protocol.EXIT_NOT_FOUND, f"{name}: command not found"
        else:
            code, text = protocol.EXIT_NOT_EXECUTABLE, f"{name}: {exc.strerror}"
        data = protocol.encode_data(f"bungalow-agent: {text}\n".encode())
        self._send(protocol.event(protocol.EV_STDERR, self.id, data=data))
        fields = {"code": code, "signal": None, "timed_out": False, "message": text}
        self._send(protocol.event(protocol.EV_EXIT, self.id, **fields))

    def _wait(self, proc: subprocess.Popen[bytes]) -> None:
        returncode = proc.wait()
        with self._lock:
            self._returncode = returncode
            if not self._done:
                self._wake()

    def _finish(self) -> None:
        """Stop taking messages and close the wake pipe, under the lock the reader uses."""
        with self._lock:
            self._done = True
            _close(self._wake_r)
            _close(self._wake_w)
        self._forget(self.id)


class _Pump:
    """The pump thread's own state: the command's fds and the timers."""

    def __init__(self, session: ExecSession, spawned: Spawned) -> None:
        self.s = session
        self.pgid = spawned.proc.pid  # start_new_session: the group is the command's pid
        self.outputs = spawned.outputs
        self.stdin_fd = spawned.stdin_fd
        self.tty = spawned.tty
        self.master = spawned.stdin_fd if spawned.tty else None  # the pty, while it is open
        self.grace = spawned.kill_grace
        timeout = spawned.timeout
        self.deadline = time.monotonic() + timeout if timeout else None
        self.kill_at: float | None = None
        self.linger_until: float | None = None
        self.terminating = False
        self.timed_out = False
        self.groups = {self.pgid}  # the process groups an end signal goes to

    def run(self) -> bool:
        """Move bytes until the command exited and its output ended; True if it timed out."""
        s = self.s
        while True:
            with s._lock:
                room = protocol.WINDOW - s._unacked
                exited = s._returncode is not None
                cancelled = s._cancelled
                controls, s._controls = s._controls, []
                want_stdin = bool(s._stdin) or s._stdin_closing
            self._apply(controls)
            now = time.monotonic()
            self._check_timers(now, cancelled, exited)
            if want_stdin and (self.stdin_fd is None or (exited and not self.tty)):
                self._close_stdin(discard=True)  # nobody left to read it
                want_stdin = False
            if exited:
                self.deadline = None  # what lingers after the exit is not timed
                if self.linger_until is None or (room <= 0 and not cancelled):
                    self.linger_until = now + EXIT_LINGER  # back-pressure is not silence
                if not self.outputs or now >= self.linger_until:
                    self.finish()
                    return self.timed_out
            masks = {s._wake_r: select.POLLIN}
            if room > 0 or cancelled:
                masks.update((fd, select.POLLIN) for fd in self.outputs)
            if self.stdin_fd is not None and want_stdin:
                masks[self.stdin_fd] = masks.get(self.stdin_fd, 0) | select.POLLOUT
            poller = select.poll()
            for fd, mask in masks.items():
                poller.register(fd, mask)
            timers = [t for t in (self.deadline, self.kill_at, self.linger_until) if t is not None]
            wait_ms = max(0, int((min(timers) - now) * 1000) + 1) if timers else None
            for fd, mask in poller.poll(wait_ms):
                if fd == s._wake_r:
                    _drain(fd)
                    continue
                if fd in self.outputs and mask & _READABLE and (room > 0 or cancelled):
                    self._forward_output(fd, room if room > 0 else protocol.MAX_CHUNK, cancelled)
                    if exited:
                        self.linger_until = now + EXIT_LINGER
                if fd == self.stdin_fd and mask & select.POLLOUT:
                    self._feed_stdin()

    def _apply(self, controls: list[tuple[str, int, int]]) -> None:
        for what, first, second in controls:
            if what == "signal":
                _killpg(self.pgid, first)
            elif self.master is not None:
                set_window(self.master, first, second)

    def _check_timers(self, now: float, cancelled: bool, exited: bool) -> None:
        """End the command at its deadline or on cancel, SIGKILL it after the grace.

        A timeout sends SIGTERM, as timeout(1) does. A cancel means the host's user is
        gone: a terminal session gets SIGHUP, as a terminal that hangs up sends, and
        one without a terminal SIGTERM.
        """
        late = self.deadline is not None and now >= self.deadline and not exited
        if not self.terminating and (cancelled or late):
            self.timed_out = not cancelled
            self.terminating = True
            hang_up = cancelled and self.tty
            self._signal_command(signal.SIGHUP if hang_up else signal.SIGTERM)
            self.kill_at = now + self.grace
        if self.kill_at is not None and now >= self.kill_at:
            self._signal_command(signal.SIGKILL)
            self.kill_at = None

    def _signal_command(self, signum: int) -> None:
        """Signal the command's process group and, on a terminal, its foreground group.

        A shell on a terminal runs each job in a group of its own; the one in the
        foreground is what a user at that terminal would be talking to.
        """
        if self.master is not None:
            with contextlib.suppress(OSError):
                self.groups.add(os.tcgetpgrp(self.master))
        for group in self.groups:
            if group > 0:
                _killpg(group, signum)

    def finish(self) -> None:
        """The command exited: a SIGKILL still due goes now to what is left of its groups."""
        if self.kill_at is not None:
            self._signal_command(signal.SIGKILL)
            self.kill_at = None

    def _forward_output(self, fd: int, room: int, discard: bool) -> None:
        """Send what the command wrote on ``fd``; at end of file, stop watching it."""
        try:
            data = os.read(fd, min(protocol.MAX_CHUNK, room))
        except BlockingIOError:
            return
        except OSError:  # EIO: a pty whose other side is all closed
            data = b""
        if not data:
            del self.outputs[fd]
            if fd == self.master:
                self.stdin_fd = self.master = None
            _close(fd)
            return
        if not discard:
            with self.s._lock:
                self.s._unacked += len(data)
            event = protocol.event(self.outputs[fd], self.s.id, data=protocol.encode_data(data))
            self.s._send(event)

    def _feed_stdin(self) -> None:
        """Write pending host bytes to the command, then close its stdin if asked."""
        s, fd = self.s, self.stdin_fd
        assert fd is not None
        with s._lock:
            data = bytes(s._stdin[: protocol.MAX_CHUNK])
            closing = s._stdin_closing
        if data:
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                return
            except OSError:  # the command closed its stdin: drop the rest
                self._close_stdin(discard=True)
                return
            with s._lock:
                del s._stdin[:written]
                left = len(s._stdin)
            s._send(protocol.event(protocol.EV_ACK, s.id, bytes=written))
            if left:
                return
        if closing:
            if self.tty:
                os.write(fd, _EOT)
                self.stdin_fd = None
            else:
                self._close_stdin(discard=False)

    def _close_stdin(self, discard: bool) -> None:
        s = self.s
        with s._lock:
            dropped = len(s._stdin) if discard else 0
            s._stdin.clear()
            s._stdin_closing = False
        if not self.tty:
            _close(self.stdin_fd)
        self.stdin_fd = None
        if dropped:  # credit back, so a host waiting on a full window carries on
            s._send(protocol.event(protocol.EV_ACK, s.id, bytes=dropped))

    def close(self) -> None:
        for fd in {*self.outputs, self.stdin_fd} - {None}:
            _close(fd)
        self.outputs.clear()
        self.stdin_fd = None


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        os.read(fd, 4096)
