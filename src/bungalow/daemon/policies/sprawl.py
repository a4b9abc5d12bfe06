"""VM sprawl: the VMs nobody seems to need, why each is listed, and what would be done.

A finding is one reason a VM looks forgotten:

- ``lease-ending`` / ``lease-expired``: its lease ends within the warning
  period or has ended (the reaper carries these out itself);
- ``idle``: running, but quiet for longer than its idle policy's ``after``;
- ``orphan-project``: its project was removed (``project rm --orphan-vms``);
- ``orphan-owner``: with ``[sprawl] owners = "local-users"``, its owner is no
  user this host knows (owners are free text otherwise: teams, e-mail names);
- ``long-stopped``: stopped, failed or suspended for ``[sprawl] stopped_after``,
  still holding its disk;
- ``pool``: a sandbox waiting, started, in the warm pool (sandboxes/pool.py):
  nobody's yet, but it holds memory; the reaper removes it when its pool
  lapses (``expires_at``), so it is listed with that and left to the reaper.

Each carries the action ``sprawl --apply`` takes (the VM's own policy when it
has one, else the ``[sprawl]`` default for the kind) and whether the reaper
takes it by itself anyway. Cost fields come from the ``price`` callable the
daemon passes in (cost per hour, cost so far); without one they are None.
``memory_held`` is what the VM really costs the host in memory now (its QEMU's
PSS, from the ``held`` callable: telemetry/memory.py), not its nominal size: an
idle guest that touched little, or shares pages through KSM or a snapshot, holds
less; None for a VM without a QEMU.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bungalow.daemon.policies.actions import PolicyActions
from bungalow.daemon.policies.idle import Idleness
from bungalow.daemon.policies.leases import Leases
from bungalow.daemon.policies.settings import Action, PolicyConfig
from bungalow.daemon.state.audit import acting_as
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.state.store import Store
from bungalow.errors import BungalowError
from bungalow.units import format_span

Price = Callable[[VmRecord], tuple[float, float]]
#: Host memory a VM's QEMU holds now, in bytes; None if it has none.
Held = Callable[[VmRecord], int | None]
_PARKED = (VmState.STOPPED, VmState.FAILED, VmState.CREATED, VmState.SUSPENDED)
#: Which finding's action --apply takes when a VM has several.
_PRECEDENCE = ("lease-expired", "lease-ending", "orphan-project", "orphan-owner", "idle",
               "long-stopped", "pool")  # fmt: skip
#: Findings the reaper carries out at their time: --apply leaves them to it.
_AWAITED = ("lease-ending", "pool")


@dataclass(frozen=True)
class Finding:
    vm: str
    kind: str
    why: str
    since: float
    seconds: float
    action: str
    automatic: bool
    state: str
    owner: str | None
    project: str | None
    cost_per_hour: float | None = None
    cost_so_far: float | None = None
    memory_held: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Sprawl:
    def __init__(
        self, store: Store, leases: Leases, idleness: Idleness, actions: PolicyActions,
        config: PolicyConfig, clock: Clock, price: Price | None = None, held: Held | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.leases = leases
        self.idleness = idleness
        self.actions = actions
        self.config = config
        self.clock = clock
        self.price = price
        self.held = held

    def find(self, project: str | None = None) -> list[Finding]:
        """Every finding, VM by VM; only ``project``'s VMs when a project asks."""
        now = self.clock.now()
        idle = {item.vm.name: item for item in self.idleness.idle()}
        projects = self.store.projects.names()
        found: list[Finding] = []
        for vm in self.store.vms.list():
            if project is not None and vm.project != project:
                continue
            if vm.pool is not None:
                found.append(self._pooled(vm, now))
                continue
            found += self._lease(vm, now)
            if vm.name in idle:
                item = idle[vm.name]
                action = item.policy.action
                quiet = format_span(now - item.since)
                found.append(self._finding(
                    vm, "idle", f"no CPU, disk, network or exec use for {quiet}",
                    item.since, action if action != "none" else self.config.idle_action,
                    item.automatic, now,
                ))  # fmt: skip
            if vm.project is not None and vm.project not in projects:
                since = self._project_removed(vm.project) or vm.created
                found.append(self._finding(
                    vm, "orphan-project", f"its project {vm.project} was removed", since,
                    self._orphan_action(vm), False, now,
                ))  # fmt: skip
            if self.config.owners == "local-users" and vm.owner and not _user_exists(vm.owner):
                found.append(self._finding(
                    vm, "orphan-owner", f"its owner {vm.owner} is not a user of this host",
                    vm.created, self._orphan_action(vm), False, now,
                ))  # fmt: skip
            found += self._long_stopped(vm, now)
        return found

    def _finding(
        self, vm: VmRecord, kind: str, why: str, since: float, action: str, automatic: bool,
        now: float,
    ) -> Finding:  # fmt: skip
        per_hour, so_far = self.price(vm) if self.price is not None else (None, None)
        return Finding(
            vm=vm.name, kind=kind, why=why, since=since, seconds=now - since, action=action,
            automatic=automatic, state=str(vm.state), owner=vm.owner, project=vm.project,
            cost_per_hour=per_hour, cost_so_far=so_far,
            memory_held=self.held(vm) if self.held is not None else None,
        )  # fmt: skip

    def _lease(self, vm: VmRecord, now: float) -> list[Finding]:
        if vm.expires_at is None or now < vm.expires_at - self.config.warn_before:
            return []
        if vm.sandbox and now < vm.expires_at:
            return []  # a sandbox's timeout is its client's plan, not sprawl
        left = vm.expires_at - now
        kind = "lease-expired" if left <= 0 else "lease-ending"
        why = (
            f"its lease ended {format_span(-left)} ago"
            if left <= 0
            else f"its lease ends in {format_span(left)}"
        )
        warned_from = vm.lease_warned or vm.expires_at - self.config.warn_before
        since = vm.expires_at if left <= 0 else warned_from
        return [self._finding(vm, kind, why, since, vm.on_expiry, True, now)]

    def _pooled(self, vm: VmRecord, now: float) -> Finding:
        why = "waits in the warm pool for the next sandbox of its shape"
        if vm.expires_at is not None:
            left = vm.expires_at - now
            when = f"in {format_span(left)}" if left > 0 else "now"
            why += f"; the pool lapses {when} unless one is asked for"
        return self._finding(vm, "pool", why, vm.created, "delete", True, now)

    def _orphan_action(self, vm: VmRecord) -> str:
        action = self.config.orphan_action
        if action in ("stop", "suspend") and vm.state in _PARKED:
            return "none"
        return action

    def _long_stopped(self, vm: VmRecord, now: float) -> list[Finding]:
        if vm.state not in _PARKED:
            return []
        parked = self.store.events.last(("stopped", "failed", "suspended", "created"), vm=vm.name)
        since = max(parked or 0.0, vm.created)
        if now - since < self.config.stopped_after:
            return []
        why = f"{vm.state} for {format_span(now - since)}, holding its disk"
        return [self._finding(vm, "long-stopped", why, since, self.config.stopped_action, False,
                              now)]  # fmt: skip

    def _project_removed(self, project: str) -> float | None:
        return self.store.events.last(("project-removed",), subject=project)

    async def apply(self, project: str | None = None) -> list[dict[str, Any]]:
        """Carry out, for each listed VM, the action of its first finding (by precedence)
        that has one."""
        chosen: dict[str, Finding] = {}
        for finding in sorted(self.find(project), key=lambda f: _PRECEDENCE.index(f.kind)):
            # A lease still running is the user's word, a warm pool the config's: the
            # reaper acts when either ends.
            if finding.action != "none" and finding.kind not in _AWAITED:
                chosen.setdefault(finding.vm, finding)
        results = []
        for finding in chosen.values():
            try:
                with acting_as("sprawl --apply", f"{finding.kind}: {finding.why}"):
                    done = await self.actions.perform(finding.vm, Action(finding.action))
                    self.store.events.add(finding.vm, "sprawl", f"{done}: {finding.why}")
                results.append({"vm": finding.vm, "action": finding.action, "result": done})
            except BungalowError as exc:
                results.append({"vm": finding.vm, "action": finding.action, "error": exc.message})
        return results


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
