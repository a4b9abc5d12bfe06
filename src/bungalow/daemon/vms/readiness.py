"""Waiting for a guest's services: systemd's own view of its boot, polled through the agent.

``launch`` returns once the agent answers, which in a server image is long
before ``multi-user.target``: the agent is started by udev with no default
dependencies (images/server.py). ``launch --wait services`` (``POST
/v1/vms/NAME/wait``) then polls ``systemctl is-system-running`` and the number
of jobs systemd still has queued, reporting each change, until the state is
``running`` or ``degraded``. Under TCG and with cloud-init installing packages
this takes minutes, so the wait is long, its limit the caller's, and it shows
progress (Multipass's lesson, anchors-next.md 2.2). A micro image has no
systemd: the wait ends at once and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bungalow.errors import AgentError, InvalidStateError
from bungalow.guest.channel import AgentChannel

#: One exec a poll: the state, the queued jobs, the failed units (for ``degraded``).
PROBE = (
    'state=$(systemctl is-system-running 2>/dev/null); echo "${state:-unknown}"; '
    "systemctl list-jobs --no-legend --no-pager 2>/dev/null | wc -l; "
    "systemctl list-units --state=failed --no-legend --plain --no-pager 2>/dev/null"
    " | while read -r unit _; do printf '%s ' \"$unit\"; done; echo"
)
#: States in which systemd has finished starting (systemctl(1), is-system-running).
SETTLED = ("running", "degraded")
#: States that will not become running by waiting.
STUCK = {
    "maintenance": "is in maintenance (emergency) mode",
    "stopping": "is shutting down",
    "offline": "has no running systemd",
}
#: Seconds between polls; each costs the guest a few forks of systemctl.
INTERVAL = 1.0
#: What ``state`` says for a guest with no systemd (a micro image).
NO_SYSTEMD = "no-systemd"


@dataclass(frozen=True)
class SystemState:
    """One look at the guest's systemd: its state word, queued jobs, failed units."""

    state: str
    jobs: int
    failed: tuple[str, ...] = ()

    @property
    def settled(self) -> bool:
        return self.state in SETTLED


def parse_probe(output: str) -> SystemState:
    """The :data:`PROBE`'s lines (state, jobs, failed units) as a :class:`SystemState`.

    ``is-system-running`` prints ``initializing``, ``starting``, ``running``,
    ``degraded``, ``maintenance``, ``stopping``, ``offline`` or ``unknown``.
    """
    lines = [*output.split("\n"), "", "", ""]
    state = lines[0].strip() or "unknown"
    try:
        jobs = int(lines[1].strip())
    except ValueError:
        jobs = 0
    failed = tuple(lines[2].split())
    return SystemState(state=state, jobs=jobs, failed=failed)


async def probe(agent: AgentChannel) -> SystemState:
    """Ask the guest once; AgentError when the agent cannot run the probe."""
    session = await agent.exec(["/bin/sh", "-c", PROBE], timeout=20)
    result = await session.collect()
    return parse_probe(result.stdout.decode(errors="replace"))


async def wait_services(
    name: str,
    agent: Callable[[], Awaitable[AgentChannel]],
    *,
    systemd: bool,
    timeout: float,
    interval: float = INTERVAL,
) -> AsyncIterator[dict[str, Any]]:
    """NDJSON events while VM ``name``'s systemd starts: ``progress`` (state, jobs,
    elapsed seconds) at each change, then ``done`` (state, failed units, elapsed).

    ``agent`` gives the VM's agent channel (reconnected if it dropped); an agent
    that does not answer for a while (it restarts) is waited for within the
    same ``timeout``. Raises InvalidStateError (:func:`timeout_sentence`) after
    ``timeout`` seconds, and when systemd is in a state waiting cannot leave.
    """
    began = time.monotonic()
    if not systemd:
        yield {"type": "done", "state": NO_SYSTEMD, "failed": [], "elapsed": 0.0}
        return
    last: SystemState | None = None
    trouble = ""
    while True:
        elapsed = time.monotonic() - began
        try:
            current = await asyncio.wait_for(probe(await agent()), max(1.0, timeout - elapsed))
            trouble = ""
        except (AgentError, TimeoutError) as exc:
            current, trouble = last or SystemState("unknown", 0), getattr(exc, "message", "")
        elapsed = round(time.monotonic() - began, 1)
        if current.settled:
            failed = list(current.failed)
            yield {"type": "done", "state": current.state, "failed": failed, "elapsed": elapsed}
            return
        if current.state in STUCK:
            raise InvalidStateError(
                f"The VM {name}'s systemd {STUCK[current.state]}, which waiting will not end; "
                f"see `bungalow console {name}` or `bungalow logs {name}`."
            )
        if current != last:
            yield {"type": "progress", "state": current.state, "jobs": current.jobs,
                   "elapsed": elapsed}  # fmt: skip
            last = current
        if elapsed >= timeout:
            raise InvalidStateError(timeout_sentence(name, timeout, current, trouble))
        await asyncio.sleep(min(interval, max(0.0, timeout - elapsed)))


def timeout_sentence(name: str, timeout: float, state: SystemState, trouble: str = "") -> str:
    """What a wait that ran out says: where systemd was, and what to do."""
    where = f"systemd says {state.state} with {state.jobs} job{'s' * (state.jobs != 1)} queued"
    if trouble:
        where += f"; the agent did not answer last ({trouble.rstrip('.')})"
    return (
        f"The VM {name}'s services had not finished starting after {timeout:g}s ({where}); "
        f"wait longer with --timeout, or see what is queued with "
        f"`bungalow exec {name} -- systemctl list-jobs`."
    )
