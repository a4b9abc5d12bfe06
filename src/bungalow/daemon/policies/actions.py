"""The actions a policy (lease, idleness, sprawl) may take on a VM, in one place.

Each is carried out as the current actor (audit.acting_as), so the events the
manager writes on the way (``stopped``, ``removed``...) name the policy and
its reason. An action that has nothing to do (stopping a stopped VM) says so
and succeeds: the policy's aim is met.
"""

from __future__ import annotations

from bungalow.daemon.policies.restorable import Restorable
from bungalow.daemon.snapshots.suspend import Suspender
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import UserError

_RUNNING = (VmState.RUNNING, VmState.PAUSED)


class PolicyActions:
    def __init__(
        self, manager: VmManager, suspender: Suspender, restorable: Restorable, retention: float
    ) -> None:
        self.m = manager
        self.suspender = suspender
        self.restorable = restorable
        self.retention = retention

    async def perform(self, name: str, action: str) -> str:
        """Do ``action`` to the VM; a short account of what was done."""
        state = self.m.get(name).state
        if action == "stop":
            if state not in _RUNNING:
                return f"nothing to stop: it is {state}"
            await self.m.stop(name)
            return "stopped"
        if action == "suspend":
            if state not in _RUNNING:
                return f"nothing to suspend: it is {state}"
            await self.suspender.suspend(name)
            return "suspended"
        if action == "delete":
            await self.m.remove(name)
            return "deleted"
        if action == "snapshot-and-delete":
            await self.restorable.snapshot_and_delete(name, self.retention)
            return "saved and deleted"
        if action == "none":
            return "nothing to do"
        raise UserError(f"The action {action!r} is unknown.")
