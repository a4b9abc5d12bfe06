"""Idleness from real signals: guest CPU, disk and network, and use of exec, files or console.

Every reaper tick, each running VM's latest rates from metrics.py are held
against its idle policy's thresholds (CPU as a share of one host CPU: an idle
TCG guest here costs 0.5-1.5% of one, a busy one 100%; disk and network in
bytes a second). Any signal above its threshold, or any exec, file transfer or
console attach (api_guest.py), sets the VM's ``last_active`` in the database.
A VM is idle once ``last_active`` (or its start, whichever is later) is
``after`` in the past, *and* the current sample shows it quiet.

Because ``last_active`` is kept in the database, a daemon restart neither
makes every VM active since now nor idle since now: it goes on from what it
last saw. The time the daemon was down counts as idle unless the first
samples after the restart show activity.

The policy is the config's ``[idle]``, overlaid by the VM's project's
(``project set --idle-after``), overlaid by the VM's own (``launch
--idle-after --on-idle``). The reaper acts by itself on an idle action
unless it is destructive and came from a default rather than the VM itself;
``sprawl`` lists those and ``sprawl --apply`` does them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bungalow.daemon.policies.actions import PolicyActions
from bungalow.daemon.policies.settings import (
    DESTRUCTIVE,
    Action,
    IdlePolicy,
    PolicyConfig,
    idle_changes,
)
from bungalow.daemon.state.audit import acting_as
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import BungalowError

log = logging.getLogger(__name__)

#: The latest per-second rates of a VM (telemetry/metrics.py ``Metrics.rates``); {} if none.
LatestRates = Callable[[str], dict[str, float]]


def busy(rates: dict[str, float], policy: IdlePolicy) -> bool:
    """Whether one sample's rates show the VM doing something."""
    disk = rates.get("block_rd_bytes", 0.0) + rates.get("block_wr_bytes", 0.0)
    net = rates.get("net_rx_bytes", 0.0) + rates.get("net_tx_bytes", 0.0)
    return rates.get("cpu", 0.0) > policy.cpu or disk > policy.disk or net > policy.net


@dataclass(frozen=True)
class IdleVm:
    vm: VmRecord
    policy: IdlePolicy
    since: float
    #: Where the action came from: ``vm``, ``project`` or ``config``.
    source: str

    @property
    def automatic(self) -> bool:
        """Whether the reaper acts on its own (a destructive default waits for --apply)."""
        if self.policy.action == Action.NONE:
            return False
        return self.policy.action not in DESTRUCTIVE or self.source == "vm"


class Idleness:
    def __init__(
        self, vms: VmManager, rates: LatestRates, actions: PolicyActions, config: PolicyConfig,
        clock: Clock,
    ) -> None:  # fmt: skip
        self.vms = vms
        self.store = vms.store
        self.rates = rates
        self.actions = actions
        self.config = config
        self.clock = clock

    def _project_policy(self, project: str | None) -> dict[str, object]:
        found = None if project is None else self.store.projects.find(project)
        return {} if found is None else found.idle

    def policy_for(self, vm: VmRecord) -> tuple[IdlePolicy, str]:
        project = self._project_policy(vm.project)
        policy = self.config.idle.overlaid(project).overlaid(vm.idle)
        source = "vm" if "action" in vm.idle else "project" if "action" in project else "config"
        return policy, source

    async def set_policy(self, name: str, values: dict[str, Any]) -> VmRecord:
        """Change the VM's own idle policy by ``values`` as users type them (``30m``,
        ``5%``, ``64K``; None keeps one); UserError with a sentence for a bad value."""
        changes = idle_changes(values)
        async with self.vms.locked(name):
            vm = self.vms.get(name)
            vm = self.store.vms.set_idle(vm.id, {**vm.idle, **changes})
            shown = ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                              for key, value in sorted(vm.idle.items()))  # fmt: skip
            self.store.events.add(name, "idle-policy", f"idle policy: {shown}")
            return vm

    def since(self, vm: VmRecord) -> float:
        return max(vm.last_active or 0.0, vm.started or 0.0, vm.created)

    def observe(self) -> None:
        """Record activity (``last_active``) of every running VM whose latest sample shows it."""
        now = self.clock.now()
        for vm in self.store.vms.list():
            rates = self.rates(vm.name)
            if vm.state is VmState.RUNNING and rates and busy(rates, self.policy_for(vm)[0]):
                self.store.vms.touch_active(vm.name, now)

    def idle(self) -> list[IdleVm]:
        """Running VMs quiet now and for at least their policy's ``after`` (reads only)."""
        now = self.clock.now()
        found = []
        for vm in self.store.vms.list():
            rates = self.rates(vm.name)
            if vm.state is not VmState.RUNNING or not rates:
                continue
            policy, source = self.policy_for(vm)
            if busy(rates, policy):
                continue
            since = self.since(vm)
            if vm.pool is None and now - since >= policy.after:
                found.append(IdleVm(vm, policy, since, source))
        return found

    async def tick(self) -> list[str]:
        """Record activity, then carry out the automatic idle actions; the names acted on."""
        self.observe()
        acted = []
        for item in self.idle():
            if not item.automatic:
                continue
            minutes = (self.clock.now() - item.since) / 60
            why = f"idle for {minutes:.0f}m (after {item.policy.after / 60:g}m, {item.source})"
            try:
                with acting_as("policy idle", why):
                    done = await self.actions.perform(item.vm.name, Action(item.policy.action))
                    self.store.events.add(item.vm.name, "idle", f"{done}: {why}")
            except BungalowError as exc:
                log.warning("could not act on idle %s: %s", item.vm.name, exc.message)
                continue
            acted.append(item.vm.name)
        return acted
