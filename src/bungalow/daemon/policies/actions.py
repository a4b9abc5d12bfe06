"""The actions a policy (lease, idleness, sprawl) may take on a VM, in one place.

Each is carried out as the current actor (state/audit.py ``acting_as``), so the
events the VM service writes on the way (``stopped``, ``removed``...) name
the policy and its reason. An action that has nothing to do (stopping a
stopped VM) says so and succeeds: the policy's aim is met.
"""

from __future__ import annotations

from bungalow.daemon.policies.restorable import Restorable
from bungalow.daemon.policies.settings import Action
from bungalow.daemon.snapshots.suspend import Suspender
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.vms.manager import VmManager

_RUNNING = (VmState.RUNNING, VmState.PAUSED)


class PolicyActions:
    def __init__(
        self, vms: VmManager, suspender: Suspender, restorable: Restorable, retention: float
    ) -> None:
        self.vms = vms
        self.suspender = suspender
        self.restorable = restorable
        self.retention = retention

    async def perform(self, name: str, action: Action) -> str:
        """Do ``action`` to the VM; a short account of what was done."""
        state = self.vms.get(name).state
        match Action(action):
            case Action.STOP:
                if state not in _RUNNING:
                    return f"nothing to stop: it is {state}"
                await self.vms.stop(name)
                return "stopped"
            case Action.SUSPEND:
                if state not in _RUNNING:
                    return f"nothing to suspend: it is {state}"
                await self.suspender.suspend(name)
                return "suspended"
            case Action.DELETE:
                await self.vms.remove(name)
                return "deleted"
            case Action.SNAPSHOT_AND_DELETE:
                await self.restorable.snapshot_and_delete(name, self.retention)
                return "saved and deleted"
            case Action.NONE:
                return "nothing to do"
