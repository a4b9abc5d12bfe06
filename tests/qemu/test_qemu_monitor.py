"""QMP through Monitor against a real QEMU: commands, errors, events, hang-ups."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bungalow.errors import QemuError
from bungalow.qemu.argv import MachineSpec, RunFiles
from bungalow.qemu.monitor import Monitor
from bungalow.qemu.process import launch, pid_alive, wait_exit

SpecFactory = Callable[..., MachineSpec]


def test_connect_to_a_missing_socket_fails_with_a_sentence(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(QemuError, match=r"Could not reach QEMU's monitor at .* within 0.3 s"):
        asyncio.run(Monitor.connect(tmp_path / "qmp.sock", timeout=0.3))
    assert time.monotonic() - started < 2


@pytest.mark.vm
def test_commands_events_and_quit(make_spec: SpecFactory) -> None:
    machine = make_spec(cmdline_extra="test_action=wait")
    pid = launch(machine)

    async def scenario() -> list[str]:
        async with await Monitor.connect(RunFiles(machine.run_dir).qmp) as monitor:
            assert monitor.connected
            with pytest.raises(QemuError, match=r"did not answer within 0\.5 s; another client"):
                await Monitor.connect(RunFiles(machine.run_dir).qmp, timeout=0.5)
            await monitor.stop()
            assert await monitor.status() == "paused"
            await monitor.cont()
            assert await monitor.status() == "running"
            await monitor.powerdown()  # accepted; the test guest has no ACPI daemon to act on it
            with pytest.raises(QemuError, match="QEMU refused no-such-command: The command"):
                await monitor.execute("no-such-command")
            assert await monitor.execute("query-name") == {"name": "testvm"}
            await monitor.quit()
            names = [event.name async for event in monitor.events()]
            assert not monitor.connected
            with pytest.raises(QemuError, match="monitor closed during query-status"):
                await monitor.status()
        await asyncio.wait_for(wait_exit(pid), 10)
        return names

    console = io.StringIO()  # what an application's root handler would print
    handler = logging.StreamHandler(console)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        names = asyncio.run(scenario())
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert names[:2] == ["STOP", "RESUME"]
    assert "SHUTDOWN" in names
    assert not pid_alive(pid, machine.run_dir)
    assert "qmp" not in console.getvalue().lower()
