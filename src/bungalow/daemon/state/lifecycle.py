"""The life of a VM as an explicit state machine.

Every change of state goes through :func:`transition`, which refuses a move the
table below does not allow, so a race (a stop arriving while a start is under
way) ends in a clear error instead of a VM in an impossible state.
"""

from __future__ import annotations

from enum import StrEnum

from bungalow.errors import InvalidStateError


class VmState(StrEnum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    #: Memory and devices saved to a snapshot and QEMU ended; ``start`` carries on from it.
    SUSPENDED = "suspended"


_ALLOWED: dict[VmState, frozenset[VmState]] = {
    VmState.CREATED: frozenset({VmState.STARTING, VmState.FAILED}),
    VmState.STARTING: frozenset({VmState.RUNNING, VmState.FAILED, VmState.STOPPING}),
    VmState.RUNNING: frozenset(
        {VmState.PAUSED, VmState.STOPPING, VmState.STOPPED, VmState.FAILED, VmState.SUSPENDED}
    ),
    VmState.PAUSED: frozenset(
        {VmState.RUNNING, VmState.STOPPING, VmState.STOPPED, VmState.FAILED, VmState.SUSPENDED}
    ),
    VmState.STOPPING: frozenset({VmState.STOPPED, VmState.FAILED}),
    VmState.STOPPED: frozenset({VmState.STARTING}),
    VmState.FAILED: frozenset({VmState.STARTING, VmState.STOPPED}),
    VmState.SUSPENDED: frozenset({VmState.STARTING}),
}

#: States in which a QEMU process may exist for the VM.
ACTIVE_STATES = frozenset({VmState.STARTING, VmState.RUNNING, VmState.PAUSED, VmState.STOPPING})


def can_transition(current: VmState, target: VmState) -> bool:
    return target in _ALLOWED[current]


def transition(name: str, current: VmState, target: VmState) -> VmState:
    """Return ``target`` if ``current -> target`` is allowed, else raise InvalidStateError."""
    if not can_transition(current, target):
        raise InvalidStateError(_refusal(name, current, target))
    return target


def _refusal(name: str, current: VmState, target: VmState) -> str:
    if target is VmState.STARTING and current in ACTIVE_STATES:
        return f"The VM {name} is already {current}; there is nothing to start."
    if target is VmState.STOPPING and current is VmState.STOPPED:
        return f"The VM {name} is already stopped; start it with `bungalow start {name}`."
    if target is VmState.PAUSED and current is VmState.PAUSED:
        return f"The VM {name} is already paused; resume it with `bungalow resume {name}`."
    if target is VmState.RUNNING and current is VmState.RUNNING:
        return f"The VM {name} is running, not paused; there is nothing to resume."
    if target is VmState.RUNNING and current in (VmState.STOPPED, VmState.CREATED, VmState.FAILED):
        return f"The VM {name} is {current}, not paused; start it with `bungalow start {name}`."
    if current is VmState.SUSPENDED:
        return f"The VM {name} is suspended; bring it back with `bungalow start {name}`."
    if target is VmState.PAUSED:
        return f"The VM {name} is {current}; only a running VM can be paused."
    if target is VmState.SUSPENDED:
        return f"The VM {name} is {current}; only a running or paused VM can be suspended."
    if target is VmState.STOPPING and current in (VmState.FAILED, VmState.CREATED):
        return (
            f"The VM {name} is {current}: no QEMU runs, so there is nothing to stop; start it "
            f"with `bungalow start {name}` or remove it with `bungalow rm {name}`."
        )
    if target is VmState.STOPPING and current is VmState.STOPPING:
        return f"The VM {name} is already stopping; wait for it, or remove it with `bungalow rm`."
    return f"The VM {name} is {current} and cannot become {target}."


def require_running(name: str, current: VmState, action: str, why: str | None = None) -> None:
    """Refuse ``action`` unless the VM runs, saying how to get it running.

    ``why`` is the VM's recorded ``error``: a VM paused by something other than a
    user (QEMU holding it after its disk filled up) is refused with that reason,
    which says what to do.
    """
    if current is VmState.RUNNING:
        return
    if current is VmState.PAUSED and why:
        raise InvalidStateError(f"Cannot {action}: the VM {name} is paused: {why}.")
    hint = {
        VmState.STOPPED: f"start it with `bungalow start {name}` first",
        VmState.CREATED: f"start it with `bungalow start {name}` first",
        VmState.FAILED: f"see `bungalow logs {name}`, then `bungalow start {name}`",
        VmState.STARTING: "wait until it is running",
        VmState.STOPPING: "it is shutting down",
        VmState.PAUSED: f"resume it with `bungalow resume {name}` first",
        VmState.SUSPENDED: f"bring it back with `bungalow start {name}` first",
    }[current]
    raise InvalidStateError(f"Cannot {action}: the VM {name} is {current}; {hint}.")
