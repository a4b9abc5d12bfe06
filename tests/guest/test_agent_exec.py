"""Exec over a real channel to a real agent process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bungalow.errors import NotFoundError, UserError
from bungalow.guest import AgentChannel, ExecEvent, ExecSession, protocol
from bungalow.guest.protocol import WINDOW, decode_data

from .conftest import AgentProcess, process_gone

pytestmark = pytest.mark.timeout(60)


async def test_output_streams_before_the_command_ends(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        start = time.monotonic()
        session = await channel.exec(["sh", "-c", "echo a; sleep 1; echo b"])
        seen: list[tuple[float, ExecEvent]] = []
        async for event in session.events():
            seen.append((time.monotonic() - start, event))
        first_at, first = seen[0]
        end_at, end = seen[-1]
        assert first == ExecEvent("stdout", b"a\n")
        assert first_at < 0.5 < 0.9 < end_at, "the first line waited for the end"
        assert b"".join(e.data for _, e in seen[:-1]) == b"a\nb\n"
        assert end.kind == "exit" and end.exit_code == 0 and not end.timed_out
        assert session.pid is not None and session.exit_event == end


async def test_exit_codes_signals_and_stderr(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        result = await (
            await channel.exec(["sh", "-c", "echo out; echo err >&2; exit 7"])
        ).collect()
        assert (result.exit_code, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
        assert (await (await channel.exec(["true"])).collect()).exit_code == 0
        killed = await (await channel.exec(["sh", "-c", "kill -9 $$"])).collect()
        assert (killed.exit_code, killed.signal, killed.timed_out) == (None, 9, False)


async def test_env_cwd_and_defaults(agent: AgentProcess, tmp_path: Path) -> None:
    script = 'echo "$FOO|$HOME|$LANG|$PATH"; pwd'
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        session = await channel.exec(["sh", "-c", script], env={"FOO": "bar"}, cwd=str(tmp_path))
        lines = (await session.collect()).stdout.decode().splitlines()
        foo, home, lang, path = lines[0].split("|")
        assert (foo, home, lang) == ("bar", "/root", "C.UTF-8")
        assert "/usr/bin" in path.split(":")
        assert lines[1] == str(tmp_path)
        overridden = await channel.exec(["sh", "-c", "echo $PATH"], env={"PATH": "/bin"})
        assert (await overridden.collect()).stdout == b"/bin\n"
        with pytest.raises(NotFoundError, match="working directory"):
            await channel.exec(["true"], cwd=str(tmp_path / "missing"))
        with pytest.raises(UserError):
            await channel.exec([])


async def test_stdin_is_piped_with_back_pressure(agent: AgentProcess) -> None:
    data = os.urandom(3 * WINDOW + 12345)  # more than a window: needs the agent's acks
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        session = await channel.exec(["cat"], stdin=True)
        writer = asyncio.create_task(_write_all(session, data))
        result = await session.collect()
        await writer
        assert result.stdout == data and result.exit_code == 0
        no_stdin = await (await channel.exec(["cat"])).collect()  # stdin is /dev/null
        assert (no_stdin.stdout, no_stdin.exit_code) == (b"", 0)


async def _write_all(session, data: bytes) -> None:  # type: ignore[no-untyped-def]
    await session.write_stdin(data)
    await session.close_stdin()


def _queued(session: ExecSession) -> int:
    """Bytes of output that arrived on the host and nobody has read yet."""
    queued = [m for m in session._stream._queue._queue if m]  # type: ignore[attr-defined]
    return sum(len(decode_data(m)) for m in queued)


async def test_output_is_back_pressured(agent: AgentProcess) -> None:
    size = 20 * WINDOW
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        session = await channel.exec(["head", "-c", str(size), "/dev/zero"])
        await _until(lambda: _queued(session) >= WINDOW, what="a window of output")
        for _ in range(3):  # the agent's loop has turned: more output would have come by now
            await channel.ping()
        assert _queued(session) <= WINDOW, "host buffer unbounded"
        assert session.pid is not None and not process_gone(session.pid, timeout=0)
        result = await session.collect()
        assert len(result.stdout) == size and result.exit_code == 0


async def test_timeout_kills_the_process_group(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        start = time.monotonic()
        session = await channel.exec(["sh", "-c", "sleep 30 & echo $!; wait"], timeout=0.5)
        result = await session.collect()
        assert result.timed_out and result.signal == 15 and result.exit_code is None
        assert time.monotonic() - start < 5
        assert process_gone(int(result.stdout)), "the background child survived the timeout"
        # A command that ignores SIGTERM gets SIGKILL after the grace period.
        stubborn = ["sh", "-c", "trap '' TERM; sleep 30"]
        start = time.monotonic()
        result = await (await channel.exec(stubborn, timeout=0.3, kill_grace=0.3)).collect()
        assert result.timed_out and result.signal == 9
        assert time.monotonic() - start < 5


async def test_tty_mode(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        result = await (await channel.exec(["tty"], tty=True)).collect()
        assert result.stdout.startswith(b"/dev/pts/") and result.exit_code == 0
        sized = await (await channel.exec(["stty", "size"], tty=True, rows=33, cols=101)).collect()
        assert sized.stdout.strip() == b"33 101"
        term = await (await channel.exec(["sh", "-c", "echo $TERM"], tty=True)).collect()
        assert term.stdout.strip() == b"xterm-256color"
        # Keys typed, a resize, and Ctrl-D at the end.
        session = await channel.exec(["sh", "-c", "read line; stty size; cat"], tty=True)
        await session.resize(40, 120)
        await session.write_stdin(b"go\n")
        await session.write_stdin(b"typed\n")
        await session.close_stdin()
        output = await session.collect()
        assert b"40 120" in output.stdout and b"typed" in output.stdout
        assert output.exit_code == 0


async def test_signal(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        session = await channel.exec(["sleep", "30"])
        await session.send_signal("TERM")
        assert (await session.collect()).signal == 15
        session = await channel.exec(["sleep", "30"])
        await session.send_signal(9)
        assert (await session.collect()).signal == 9
        with pytest.raises(UserError):
            await session.send_signal("NOPE")


async def test_missing_or_unrunnable_program(agent: AgentProcess, tmp_path: Path) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        session = await channel.exec(["no-such-program-xyz", "arg"])
        result = await session.collect()
        assert session.pid is None
        assert result.exit_code == 127
        assert b"no-such-program-xyz: command not found" in result.stderr
        script = tmp_path / "script.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        script.chmod(0o644)
        result = await (await channel.exec([str(script)])).collect()
        assert result.exit_code == 126 and b"Permission denied" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
async def test_user(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        session = await channel.exec(
            ["sh", "-c", "id -u; id -g; echo $HOME $USER; pwd"], user="nobody"
        )
        out = (await session.collect()).stdout.decode().split("\n")
        assert out[0] == "65534" and out[2] == "/nonexistent nobody" and out[3] == "/"
        by_uid = await (await channel.exec(["id", "-u"], user=65534)).collect()
        assert by_uid.stdout == b"65534\n"
        with pytest.raises(UserError, match="no user"):
            await channel.exec(["true"], user="no-such-user-xyz")


async def test_concurrent_execs(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:

        async def one(n: int) -> bytes:
            session = await channel.exec(["sh", "-c", f"sleep 0.5; echo {n}; echo e{n} >&2"])
            result = await session.collect()
            assert result.stderr == f"e{n}\n".encode()
            return result.stdout

        start = time.monotonic()
        outputs = await asyncio.gather(*(one(n) for n in range(20)))
        assert outputs == [f"{n}\n".encode() for n in range(20)]
        assert time.monotonic() - start < 5, "the execs did not run concurrently"


async def test_cancel_kills_the_command(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        async with await channel.exec(["sleep", "30"]) as session:
            pid = session.pid
        assert pid is not None and process_gone(pid)
        assert [e async for e in session.events()] == []
        assert (await (await channel.exec(["true"])).collect()).exit_code == 0


async def test_background_children_do_not_hold_the_exit(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        start = time.monotonic()
        session = await channel.exec(["sh", "-c", "sleep 10 & echo $!"])
        result = await session.collect()
        os.kill(int(result.stdout), signal.SIGKILL)  # it outlives the exec, by design
        assert result.exit_code == 0
        assert time.monotonic() - start < 3, "the exit waited for a background child"


async def test_stdin_nobody_reads_does_not_block_the_writer(agent: AgentProcess) -> None:
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        session = await channel.exec(["sh", "-c", "exec 0<&-; sleep 0.3"], stdin=True)
        await asyncio.wait_for(session.write_stdin(os.urandom(3 * WINDOW)), 10)
        assert (await session.collect()).exit_code == 0
        await session.write_stdin(b"after the exit: dropped")


async def test_output_for_an_unknown_id_stops_that_command(
    agent: AgentProcess, tmp_path: Path
) -> None:
    """Output nobody waits for (say, from a previous daemon's exec) is cancelled."""
    pidfile = tmp_path / "orphan.pid"  # the agent runs on this host: it writes here
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        argv = ["sh", "-c", f"echo $$ > {pidfile}; echo x; exec sleep 31.4159"]
        await channel._send(protocol.request(protocol.OP_EXEC, 12345, argv=argv))
        await _until(lambda: pidfile.exists() and pidfile.read_text().strip())
        orphan = int(pidfile.read_text())
        # Waiting on the event loop: the channel must read the output to cancel the command.
        await _until(lambda: process_gone(orphan, timeout=0), what="the orphaned exec's end")


async def _until(check: Callable[[], object], timeout: float = 10.0, what: str = "it") -> None:
    """Let the event loop run until ``check()`` is true (the channel reads meanwhile)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_request_too_long_to_read_is_answered_with_an_error(agent: AgentProcess) -> None:
    """The agent answers a line past MAX_LINE by the id at its head, then reads on."""
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        stream = channel._open(777)
        huge = protocol.request(protocol.OP_EXEC, 777, argv=["echo", "x" * protocol.MAX_LINE])
        channel._writer.write(protocol.encode(huge))  # past the check _send makes
        await channel._writer.drain()
        with pytest.raises(UserError, match="longer than the 4 MiB"):
            await asyncio.wait_for(stream.next_message(), 30)
        channel._forget(777)
        assert (await (await channel.exec(["true"])).collect()).exit_code == 0


async def test_arguments_up_to_the_guest_kernels_limit_run_and_beyond_are_refused(
    agent: AgentProcess,
) -> None:
    """1300 arguments of 1000 characters (1.3 MB, past the old 1 MiB line) run; past
    ARG_MAX (2 MiB) or MAX_ARG_STRLEN (128 KiB for one) is one sentence, nothing sent."""
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        many = ["x" * 1000] * 1300
        result = await (await channel.exec(["sh", "-c", 'echo "$#"', "sh", *many])).collect()
        assert (result.exit_code, result.stdout) == (0, b"1300\n")
        with pytest.raises(UserError, match=r"at most 2M of them \(ARG_MAX\)"):
            await channel.exec(["true", *(["x" * 100_000] * 22)])
        with pytest.raises(UserError, match=r"argument 2 is .*MAX_ARG_STRLEN"):
            await channel.exec(["true", "x" * 200_000])


async def test_cancel_hangs_up_a_terminal_session_and_its_foreground_job(
    agent: AgentProcess, tmp_path: Path
) -> None:
    """A terminal session cancelled (the user went away) gets SIGHUP, as from a terminal
    that hangs up, and so does the job in the terminal's foreground, in its own group."""
    pidfile = tmp_path / "job.pid"
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        shell = await channel.exec(["sh", "-i"], tty=True)
        await shell.write_stdin(f"sh -c 'echo $$ > {pidfile}; exec sleep 300'\n".encode())
        await _until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the job")
        job = int(pidfile.read_text())
        assert os.getpgid(job) != shell.pid, "the job should run in a group of its own"
        await shell.cancel()
        assert shell.pid is not None and process_gone(shell.pid)
        assert process_gone(job), "the foreground job outlived the hang-up"


async def test_a_silent_agent_does_not_hold_a_command_past_its_timeout(
    agent: AgentProcess,
) -> None:
    """If the agent never reports the end (a hung guest), the session reports the timeout."""
    assert agent.proc is not None
    async with await AgentChannel.connect(agent.socket, timeout=10) as channel:
        session = await channel.exec(["sleep", "60"], timeout=0.2, kill_grace=0.1)
        os.kill(agent.proc.pid, signal.SIGSTOP)
        try:
            ending = await asyncio.wait_for(session.collect(), 30)
        finally:
            os.kill(agent.proc.pid, signal.SIGCONT)
        assert ending.timed_out and ending.exit_code is None
