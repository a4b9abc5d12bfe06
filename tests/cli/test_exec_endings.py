"""How `bungalow exec`, `shell` and `run` end: timeouts, interruptions, large requests, 125."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from bungalow.client.http import Client
from bungalow.errors import UserError
from bungalow.paths import DataDir
from tests.cli.test_interactive import Terminal
from tests.conftest import BUNGALOW, Env
from tests.support import wait_until

pytestmark = pytest.mark.vm

TIMED_OUT = "The command ran past its timeout of 2s and was killed."


@pytest.fixture(scope="module")
def vm(bw_module: Env) -> str:
    bw_module.run("launch", "ends", "--memory", "512M")
    return "ends"


def _guest_pid(bw: Env, vm: str, pattern: str) -> int | None:
    """The pid of the guest process whose command line matches ``pattern``, if one runs."""
    found = bw.run("exec", vm, "--", "pgrep", "-f", pattern, check=False).stdout.split()
    return int(found[0]) if found else None


def _gone_from_guest(bw: Env, vm: str, pattern: str) -> bool:
    return _guest_pid(bw, vm, pattern) is None


def test_an_exec_over_a_mib_runs(bw_module: Env, vm: str) -> None:
    """1300 arguments of 1000 characters: past the agent's old 1 MiB line, within ARG_MAX."""
    many = ["x" * 1000] * 1300
    result = bw_module.run("exec", vm, "--timeout", "60", "--", "sh", "-c", 'echo "$#"', "sh",
                           *many, timeout=120)  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "1300\n")
    # More than this host's own ARG_MAX lets a CLI take: through the SDK's client.
    huge = ["true", *(["y" * 100_000] * 25)]
    with Client(DataDir(bw_module.home)) as api, pytest.raises(UserError, match=r"\(ARG_MAX\)"):
        list(api.exec_events(vm, huge, timeout=5))


@pytest.mark.parametrize("flags", [[], ["-i"], ["-t"], ["-i", "-t"]])
def test_every_exec_path_times_out_with_124_and_a_sentence(
    bw_module: Env, vm: str, flags: list[str]
) -> None:
    result = bw_module.run(
        "exec", *flags, vm, "--timeout", "2", "--", "sleep", "60", input=b"", check=False
    )
    assert (result.returncode, result.stderr.strip()) == (124, f"error: {TIMED_OUT}")


def test_bungalows_own_failures_are_125_apart_from_the_commands(bw_module: Env, vm: str) -> None:
    for args in (
        ["exec", "no-such-vm", "--", "true"],
        ["exec", "-i", "no-such-vm", "--", "true"],
        ["exec", vm, "--no-such-flag", "--", "true"],
        ["exec", vm],
        ["shell", "no-such-vm"],
        ["run", "no-such-image", "--", "true"],
    ):
        result = bw_module.run(*args, input=b"", check=False)
        assert result.returncode == 125, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert bw_module.run("exec", vm, "--", "sh", "-c", "exit 125", check=False).returncode == 125
    assert bw_module.run("exec", vm, "--", "sh", "-c", "exit 1", check=False).returncode == 1


def test_run_passes_the_status_on_and_times_out_with_124(bw_module: Env) -> None:
    result = bw_module.run("run", "--rm", "--timeout", "2", "debian-12", "--", "sleep", "60",
                           check=False)  # fmt: skip
    assert (result.returncode, result.stderr.strip()) == (124, f"error: {TIMED_OUT}")
    assert bw_module.run("ls", "-q").stdout.split() == ["ends"]  # --rm removed it


@pytest.mark.parametrize("flags", [["-i"], []])
def test_interrupting_an_exec_ends_its_guest_command(
    bw_module: Env, vm: str, flags: list[str]
) -> None:
    """Ctrl-C of `exec -i` (or plain exec) ends the command in the guest, not only here."""
    mark = f"sleep 61{len(flags)}"
    cli = subprocess.Popen(
        [*BUNGALOW, "exec", *flags, vm, "--", "sh", "-c", mark],
        env=bw_module.env,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A suite started in the background (`./scripts/test &`) ignores SIGINT, and so would
        # the CLI it starts: it is given Ctrl-C's default back, as on a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_until("the command to start in the guest", lambda: _guest_pid(bw_module, vm, mark))
    cli.send_signal(signal.SIGINT)
    assert cli.wait(timeout=60) == 130
    wait_until("the guest command to end", lambda: _gone_from_guest(bw_module, vm, mark))


@pytest.mark.parametrize("command", [["exec", "-i", "-t"], ["shell"]])
def test_a_hung_up_terminal_session_ends_its_guest_command(
    bw_module: Env, vm: str, command: list[str]
) -> None:
    """Closing the terminal of `exec -it` or `shell` (SIGHUP) hangs up the guest's too."""
    mark = f"sleep 62{len(command)}"
    args = [*command, vm] + (["--", "bash"] if command[0] == "exec" else [])
    term = Terminal(bw_module, *args)
    term.expect(b"# ")
    term.type(mark.encode() + b"\r")
    wait_until("the job to start in the guest", lambda: _guest_pid(bw_module, vm, mark))
    term.process.send_signal(signal.SIGHUP)  # what closing a terminal window sends
    assert term.process.wait(timeout=60) == 128 + signal.SIGHUP
    os.close(term.master)
    wait_until("the guest job to end", lambda: _gone_from_guest(bw_module, vm, mark))
