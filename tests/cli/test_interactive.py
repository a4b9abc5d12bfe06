"""Interactive sessions through a real pseudo-terminal: `bungalow shell` and `console`."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest

from tests.conftest import BUNGALOW, Env

pytestmark = pytest.mark.vm


class Terminal:
    """A CLI process on a pty, driven like a person at a keyboard."""

    def __init__(self, bw: Env, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [*BUNGALOW, *args], env=bw.env, stdin=slave, stdout=slave, stderr=slave
        )
        os.close(slave)
        self.seen = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def expect(self, text: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"never saw {text!r}; saw {self.seen[-500:]!r}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    break
        assert text in self.seen, f"never saw {text!r}; saw {self.seen[-500:]!r}"

    def close(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        os.close(self.master)
        return code


@pytest.fixture(scope="module")
def vm(bw_module: Env) -> str:
    bw_module.run("launch", "tty")
    return "tty"


def test_shell_is_an_interactive_terminal(bw_module: Env, vm: str) -> None:
    term = Terminal(bw_module, "shell", vm)
    term.expect(b"root@tty:~# ")
    term.type(b"tty; echo answer=$((6*7))\r")
    term.expect(b"answer=42")
    term.expect(b"/dev/pts/")
    term.type(b"exit 5\r")
    assert term.close() == 5


def test_console_gives_a_login_on_the_serial_port(bw_module: Env, vm: str) -> None:
    term = Terminal(bw_module, "console", vm)
    term.expect(b"Ctrl-]")
    term.type(b"\r")
    term.expect(b"root@tty:~# ")  # the login the daemon put on the serial port
    term.type(b"echo serial=$((40+2)); tty\r")
    term.expect(b"serial=42")
    term.expect(b"/dev/ttyS0")
    term.type(b"\x1d")
    assert term.close() == 0
    assert b"serial=42" in bw_module.run("logs", vm).stdout.encode()
    # Attaching again finds the same login: a second one would hang up the first.
    logins = ["exec", vm, "--", "pgrep", "-x", "login"]
    first = bw_module.run(*logins).stdout.split()
    assert len(first) == 1
    again = Terminal(bw_module, "console", vm)
    again.expect(b"Ctrl-]")
    again.type(b"\r")
    again.expect(b"root@tty:~# ")  # the console in raw mode before Ctrl-] goes
    again.type(b"\x1d")
    assert again.close() == 0
    assert bw_module.run(*logins).stdout.split() == first


def test_console_ends_when_the_vm_stops(bw_module: Env, vm: str) -> None:
    """QEMU closing the serial port (the VM stopped) ends `bungalow console` (the daemon
    closes the websocket), rather than leaving it attached to nothing."""
    term = Terminal(bw_module, "console", vm)
    term.expect(b"Ctrl-]")
    bw_module.run("stop", vm)
    code = term.close(timeout=60)
    assert code == 0, term.seen[-500:]
    bw_module.run("start", vm)  # as the module's other tests expect it
