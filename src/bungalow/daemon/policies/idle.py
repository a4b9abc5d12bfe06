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

import json
import logging
from dataclasses import dataclass

from bungalow.daemon.policies.actions import PolicyActions
from bungalow.daemon.policies.settings import DESTRUCTIVE, IdlePolicy, PolicyConfig
from bungalow.daemon.state.audit import acting_as
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.store import Store, VmRecord
from bungalow.daemon.telemetry.metrics import Metrics
from bungalow.errors import BungalowError

log = logging.getLogger(__name__)


def mark_active(store: Store, clock: Clock, name: str) -> None:
    """Someone used the VM (exec, files, console): it is not idle."""
    store.connection.execute("UPDATE vms SET last_active = ? WHERE name = ?", (clock.now(), name))


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
        if self.policy.action == "none":
            return False
        return self.policy.action not in DESTRUCTIVE or self.source == "vm"


class Idleness:
    def __init__(
        self, store: Store, metrics: Metrics, actions: PolicyActions, config: PolicyConfig,
        clock: Clock,
    ) -> None:  # fmt: skip
        self.store = store
        self.metrics = metrics
        self.actions = actions
        self.config = config
        self.clock = clock

    def _project_policy(self, project: str | None) -> dict[str, object]:
        if project is None:
            return {}
        row = self.store.connection.execute(
            "SELECT idle FROM projects WHERE name = ?", (project,)
        ).fetchone()
        result: dict[str, object] = json.loads(row[0] or "{}") if row else {}
        return result

    def policy_for(self, vm: VmRecord) -> tuple[IdlePolicy, str]:
        project = self._project_policy(vm.project)
        policy = self.config.idle.overlaid(project).overlaid(vm.idle)
        source = "vm" if "action" in vm.idle else "project" if "action" in project else "config"
        return policy, source

    def since(self, vm: VmRecord) -> float:
        return max(vm.last_active or 0.0, vm.started or 0.0, vm.created)

    def idle(self) -> list[IdleVm]:
        """Running VMs quiet now and for at least their policy's ``after``.

        On the way, every running VM whose latest sample shows activity has it
        recorded (``last_active``).
        """
        now = self.clock.now()
        found = []
        for vm in self.store.list():
            rates = self.metrics.latest(vm.name)[1]
            if vm.state is not VmState.RUNNING or not rates:
                continue
            policy, source = self.policy_for(vm)
            if busy(rates, policy):
                mark_active(self.store, self.clock, vm.name)
                continue
            since = self.since(vm)
            if vm.pool is None and now - since >= policy.after:
                found.append(IdleVm(vm, policy, since, source))
        return found

    async def tick(self) -> list[str]:
        """Record activity, then carry out the automatic idle actions; the names acted on."""
        acted = []
        for item in self.idle():
            if not item.automatic:
                continue
            minutes = (self.clock.now() - item.since) / 60
            why = f"idle for {minutes:.0f}m (after {item.policy.after / 60:g}m, {item.source})"
            try:
                with acting_as("policy idle", why):
                    done = await self.actions.perform(item.vm.name, item.policy.action)
                    self.store.add_event(item.vm.name, "idle", f"{done}: {why}")
            except BungalowError as exc:
                log.warning("could not act on idle %s: %s", item.vm.name, exc.message)
                continue
            acted.append(item.vm.name)
        return acted
