"""Leases: a VM's deadline (``--ttl``), the action taken when it passes, and renewal.

A sandbox's timeout is a lease too (action ``delete``), carried out to the
second and without a warning: its deadline is the contract with its client.

Every other lease is carried out only after a ``lease-warning`` event:
``[leases] warn_before`` (10m) before the deadline the reaper records the
warning (and ``ls`` marks the VM ``!``); the action happens at the deadline,
but never sooner than ``[leases] grace`` (1m) after the warning. So a daemon
that was down past a deadline, or a lease shorter than the warning period,
still warns first and acts a grace period later. The warning's time is kept
in the VM's row (``lease_warned``), so a restart neither warns twice nor
forgets it warned; a renewal clears it, and the next deadline warns anew.
The action happens once: afterwards the VM is gone or its lease is cleared.
"""

from __future__ import annotations

import logging
import time

from bungalow.daemon.policies.actions import PolicyActions
from bungalow.daemon.policies.settings import Action, PolicyConfig, parse_action
from bungalow.daemon.state.audit import acting_as
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import BungalowError, UserError
from bungalow.units import parse_positive_duration

log = logging.getLogger(__name__)

#: Seconds between attempts at a lease action that failed (a VM busy starting, a full disk).
RETRY_AFTER = 30.0


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


class Leases:
    def __init__(
        self, vms: VmManager, actions: PolicyActions, config: PolicyConfig, clock: Clock
    ) -> None:
        self.vms = vms
        self.store = vms.store
        self.actions = actions
        self.config = config
        self.clock = clock
        #: VMs whose lease action failed, and when to try again (the failure is an event once).
        self._retry_at: dict[str, float] = {}

    # -- what users ask --------------------------------------------------------------------------

    def launch_terms(
        self, ttl: str | float | None, on_expiry: str | None
    ) -> tuple[float | None, Action]:
        """The deadline and action of a new VM's lease, checked before anything is made."""
        if ttl is None:
            if on_expiry is not None:
                raise UserError("--on-expiry needs a lease; give one with --ttl, such as 2h.")
            return None, Action.DELETE
        seconds = parse_positive_duration(ttl, what="lease (--ttl)")
        action = parse_action(on_expiry or self.config.on_expiry, what="action on expiry")
        return self.clock.now() + seconds, action

    async def set(
        self, name: str, duration: str | float | None, on_expiry: str | None = None
    ) -> VmRecord:
        """End the VM's lease ``duration`` from now (None drops it); ``on_expiry`` if given."""
        seconds = None if duration is None else parse_positive_duration(duration, what="lease")
        async with self.vms.locked(name):
            vm = self.vms.get(name)
            if on_expiry is not None:
                action: str = parse_action(on_expiry, what="action on expiry")
            elif vm.expires_at is not None or vm.sandbox:
                action = vm.on_expiry
            else:
                action = self.config.on_expiry
            expires = None if seconds is None else self.clock.now() + seconds
            vm = self.store.vms.set_lease(vm.id, expires, action)
            text = "dropped" if expires is None else f"ends {_when(expires)}, then {action}"
            self.store.events.add(name, "lease", f"lease {text}")
            return vm

    async def renew(self, name: str, duration: str | float) -> VmRecord:
        if self.vms.get(name).expires_at is None:
            raise UserError(
                f"The VM {name} has no lease to renew; give it one with "
                f"`bungalow lease set {name} 2h`."
            )
        return await self.set(name, duration)

    # -- what the reaper does --------------------------------------------------------------------

    def action_time(self, vm: VmRecord) -> float | None:
        """When the lease's action is due; None until it has been warned about."""
        if vm.expires_at is None:
            return None
        if vm.sandbox:
            return vm.expires_at
        if vm.lease_warned is None:
            return None
        return max(vm.expires_at, vm.lease_warned + self.config.grace)

    def next_due(self) -> float | None:
        """The next moment a warning or an action falls due (for the reaper's sleep)."""
        moments = []
        for vm in self.store.vms.expiring():
            due = self.action_time(vm)
            if due is None and vm.expires_at is not None:
                due = vm.expires_at - self.config.warn_before
            if due is not None:
                moments.append(due)
        return min(moments, default=None)

    async def tick(self) -> list[str]:
        """Warn of leases ending soon, act on those due; the names of the VMs acted on."""
        now = self.clock.now()
        acted = []
        for vm in self.store.vms.expiring():
            assert vm.expires_at is not None
            if vm.pool is not None:
                continue
            if not vm.sandbox and vm.lease_warned is None:
                if now >= vm.expires_at - self.config.warn_before:
                    self._warn(vm, now)
                continue
            due = self.action_time(vm)
            if due is None or now < due or now < self._retry_at.get(vm.id, now):
                continue
            if await self._act(vm):
                acted.append(vm.name)
        return acted

    def _warn(self, vm: VmRecord, now: float) -> None:
        assert vm.expires_at is not None
        if not self.store.vms.mark_lease_warned(vm.id, now, vm.expires_at):
            return  # renewed or dropped meanwhile
        left = vm.expires_at - now
        when = f"in {left / 60:.0f}m" if left > 0 else "now (it passed while nobody watched)"
        with acting_as("policy lease"):
            self.store.events.add(
                vm.name, "lease-warning",
                f"the lease ends {when}; then {vm.on_expiry} — renew with "
                f"`bungalow lease renew {vm.name} DURATION`",
            )  # fmt: skip

    async def _act(self, vm: VmRecord) -> bool:
        assert vm.expires_at is not None
        why = "its timeout passed" if vm.sandbox else f"its lease ended {_when(vm.expires_at)}"
        try:
            with acting_as("policy lease", why):
                done = await self.actions.perform(vm.name, Action(vm.on_expiry))
                self.store.events.add(vm.name, "expired", f"{done}: {why}")
                current = self.store.vms.by_id(vm.id)
                if current is not None:
                    self.store.vms.set_lease(vm.id, None, current.on_expiry)
        except BungalowError as exc:
            log.warning("could not carry out the lease of %s: %s", vm.name, exc.message)
            if vm.id not in self._retry_at:
                with acting_as("policy lease", why):
                    self.store.events.add(vm.name, "lease-failed", f"{exc.message} (retrying)")
            self._retry_at[vm.id] = self.clock.now() + RETRY_AFTER
            return False
        self._retry_at.pop(vm.id, None)
        return True
