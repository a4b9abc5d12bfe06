"""The guest layer: the agent that runs inside VMs and the host's channel to it.

Host side (asyncio)::

    channel = await AgentChannel.connect(vm_dir / "agent.sock", timeout=30)
    session = await channel.exec(["uname", "-a"])
    async for event in session.events(): ...

Guest side: :data:`GUEST_FILES` are the files the image builder copies next to
each other into the guest (``/run/bungalow/``); ``agent.py`` is the one to run.
They import only the standard library and each other.
"""

from __future__ import annotations

from pathlib import Path

from bungalow.guest.channel import AgentChannel, PingResult, StatResult
from bungalow.guest.session import ExecEvent, ExecResult, ExecSession

_HERE = Path(__file__).parent

#: Every file the guest needs, to be placed in one directory; agent.py is the entry point.
GUEST_FILES: tuple[Path, ...] = tuple(
    _HERE / name
    for name in (
        "agent.py",
        "agent_server.py",
        "protocol.py",
        "agent_init.py",
        "agent_exec.py",
        "agent_spawn.py",
        "agent_files.py",
        "agent_identity.py",
    )
)
AGENT_ENTRY = "agent.py"

__all__ = [
    "AGENT_ENTRY",
    "GUEST_FILES",
    "AgentChannel",
    "ExecEvent",
    "ExecResult",
    "ExecSession",
    "PingResult",
    "StatResult",
]
