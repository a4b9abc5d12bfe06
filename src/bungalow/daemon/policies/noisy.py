"""Noisy neighbours: noticing a VM that takes most of a contended resource, and reining it in.

Every sample of metrics.py is weighed for two resources:

- **CPU.** A VM *waits* when its vCPUs were ready but had no host CPU for
  more than ``steal`` of the time they wanted one (run delay against run time
  plus run delay: a small latency-sensitive VM waits as surely as a big one).
  Each VM that wants CPU is promised a share of the host's CPUs by its CPU
  weight, up to its vCPUs, what one cannot use going to the others by weight
  (weighted max-min over the vCPUs, :func:`entitled_shares`). One taking
  clearly more than its promised share while another waits is the offender;
  when nobody waits, any VM may use what is idle.
- **Disk.** A VM *waits* for its disk when its requests took on average more
  than ``disk_wait`` over the last interval. One that issued most of all the
  VMs' disk requests meanwhile (more than :data:`DISK_MAJORITY` of them, at
  least :data:`MIN_DISK_RATE` per second) is the offender.

An offender for ``samples`` samples in a row is marked *noisy*: an event, a
mark in ``bungalow top`` and ``bungalow_vm_noisy`` in /metrics. With
``policy = "throttle"`` the daemon also caps it at its share: its CPU
entitlement, and for the disk its weight's share of what all VMs asked of
the disk in the last interval. The caps come on top of the VM's own limits
(the tighter wins), are never written into them, and are lifted, with an
event, after ``calm`` samples in which nobody waits for that resource. A
daemon restart or a ``bungalow set`` gives the VM back its own limits.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bungalow.daemon.state.audit import acting_as
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.state.store import Store
from bungalow.daemon.vms.limits import Limits
from bungalow.errors import BungalowError, UserError
from bungalow.units import format_size, parse_duration

log = logging.getLogger(__name__)

#: Of one CPU: below this, getting less or more than entitled is noise.
MARGIN = 0.15
#: Share of all VMs' disk requests one VM must issue to be the one others wait behind.
DISK_MAJORITY = 0.5
#: Disk requests per second below which a VM is not hammering anything.
MIN_DISK_RATE = 20.0
#: The least an automatic disk cap leaves a VM: it must still boot and log.
MIN_DISK_IOPS = 20
MIN_DISK_BW = 1 << 20
#: The least an automatic CPU cap leaves a VM, in CPUs.
MIN_CPU_CAP = 0.1
POLICIES = ("off", "throttle")


@dataclass(frozen=True)
class NoisyConfig:
    """``[noisy]`` in config.toml."""

    policy: str = "off"
    disk_wait: float = 0.020
    steal: float = 0.10
    samples: int = 3
    calm: int = 15


def load_noisy(table: dict[str, Any], path: object) -> NoisyConfig:
    """The ``[noisy]`` table, checked key by key; a bad value is one sentence."""
    known = {"policy", "disk_wait", "steal", "samples", "calm"}
    for key in table:
        if key not in known:
            raise UserError(
                f"noisy.{key} in {path} is not a setting; the settings are "
                f"{', '.join(sorted(known))}."
            )
    policy = table.get("policy", "off")
    if policy not in POLICIES:
        raise UserError(f"noisy.policy in {path} must be off or throttle, not {policy!r}.")
    disk_wait = parse_duration(table.get("disk_wait", 0.020), what="noisy.disk_wait")
    steal = table.get("steal", 0.10)
    if not isinstance(steal, int | float) or isinstance(steal, bool) or not 0 < steal < 1:
        raise UserError(f"noisy.steal in {path} must be a fraction such as 0.1, not {steal!r}.")
    counts = {}
    for key, default in (("samples", 3), ("calm", 15)):
        value = table.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000:
            raise UserError(f"noisy.{key} in {path} must be a whole number from 1 to 1000.")
        counts[key] = value
    if disk_wait <= 0:
        raise UserError(f"noisy.disk_wait in {path} must be positive, such as 20ms.")
    return NoisyConfig(policy, disk_wait, float(steal), counts["samples"], counts["calm"])


@dataclass(frozen=True)
class Offence:
    """One VM taking more than its share of ``resource`` while others wait."""

    resource: str  # "cpu" or "disk"
    message: str
    cap: dict[str, Any]  # the limits that hold it to its share


Rates = dict[str, dict[str, float]]


def cpu_offences(
    current: Rates, vms: dict[str, VmRecord], cpus: float, config: NoisyConfig
) -> tuple[dict[str, Offence], list[str]]:
    """Offenders and waiters for CPU in one interval (see the module's docstring)."""
    wanting = {n: r for n, r in current.items() if n in vms and r["cpu"] + r["steal"] > MARGIN}
    promised = entitled_shares(
        cpus,
        {n: (float(vms[n].cpus), Limits.from_json(vms[n].limits).cpu_weight) for n in wanting},
    )
    waiting = [n for n, r in wanting.items() if r["steal"] / (r["cpu"] + r["steal"]) > config.steal]
    offences = {}
    for name, r in wanting.items():
        others = [n for n in waiting if n != name]
        if others and r["cpu"] > promised[name] + MARGIN:
            message = (
                f"takes {r['cpu']:.2f} CPUs, promised {promised[name]:.2f}, "
                f"while {', '.join(sorted(others))} wait for CPU"
            )
            cap = {"cpu_cap": round(max(promised[name], MIN_CPU_CAP), 2)}
            offences[name] = Offence("cpu", message, cap)
    return offences, waiting


def disk_offences(
    current: Rates, vms: dict[str, VmRecord], config: NoisyConfig
) -> tuple[dict[str, Offence], list[str]]:
    """Offenders and waiters for the disk in one interval (see the module's docstring)."""
    requests = {n: _disk_requests(r) for n, r in current.items() if n in vms}
    waiting = [
        n
        for n, r in current.items()
        if requests.get(n, 0) > 0 and _disk_time(r) / requests[n] > config.disk_wait
    ]
    total = sum(requests.values())
    offences: dict[str, Offence] = {}
    if not total:
        return offences, waiting
    weights = {n: Limits.from_json(vms[n].limits).cpu_weight for n in requests if requests[n]}
    for name, rate in requests.items():
        others = [n for n in waiting if n != name]
        if not others or rate < MIN_DISK_RATE or rate <= DISK_MAJORITY * total:
            continue
        share = weights[name] / sum(weights.values())
        bandwidth = sum(
            current[n]["block_rd_bytes"] + current[n]["block_wr_bytes"] for n in requests
        )
        cap = {
            "disk_iops": max(MIN_DISK_IOPS, int(total * share)),
            "disk_bw": max(MIN_DISK_BW, int(bandwidth * share)),
        }
        message = (
            f"issues {rate:.0f} of the {total:.0f} disk requests per second "
            f"while {', '.join(sorted(others))} wait for the disk"
        )
        offences[name] = Offence("disk", message, cap)
    return offences, waiting


def _disk_requests(r: dict[str, float]) -> float:
    return r.get("block_rd_reqs", 0.0) + r.get("block_wr_reqs", 0.0) + r.get("block_fl_reqs", 0.0)


def _disk_time(r: dict[str, float]) -> float:
    """Seconds the interval's requests took, summed (the counters are in ns per second)."""
    ns = r.get("block_rd_times", 0.0) + r.get("block_wr_times", 0.0)
    return (ns + r.get("block_fl_times", 0.0)) / 1e9


def tighter(own: Limits, cap: dict[str, Any]) -> Limits:
    """``own`` limits with each capped value lowered to ``cap``'s where that is tighter."""
    changes = {}
    for key, value in cap.items():
        mine = getattr(own, key)
        changes[key] = value if mine is None else min(mine, value)
    return replace(own, **changes)


#: Gives the running VM ``name`` these limits now (its own, tightened); False if it is gone.
Hold = Callable[[str, Limits], Awaitable[bool]]


@dataclass
class NoisyWatch:
    """Marks noisy VMs from each interval's rates and, with the policy on, throttles them.

    It listens to the metrics sampler (telemetry/metrics.py); ``cpus`` is the
    host's CPU count and ``hold`` applies limits to a running VM's QEMU.
    """

    store: Store
    cpus: Callable[[], int]
    hold: Hold
    config: NoisyConfig = field(default_factory=NoisyConfig)
    #: VM name -> the resources it is marked noisy for.
    marked: dict[str, set[str]] = field(default_factory=dict)
    #: VM name -> resource -> the automatic cap in force.
    throttled: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _suspect: dict[tuple[str, str], int] = field(default_factory=dict)
    _calm: dict[str, int] = field(default_factory=dict)

    async def notice(self, current: Rates, vms: dict[str, VmRecord]) -> None:
        """Weigh one interval's ``current`` rates of the running ``vms``."""
        for name in [n for n in self.marked.keys() | self.throttled.keys() if n not in vms]:
            self.forget(name)
        cpu, cpu_waiting = cpu_offences(current, vms, float(self.cpus()), self.config)
        disk, disk_waiting = disk_offences(current, vms, self.config)
        offences = {(n, "cpu"): o for n, o in cpu.items()}
        offences |= {(n, "disk"): o for n, o in disk.items()}
        self._suspect = {key: self._suspect.get(key, 0) + 1 for key in offences}
        marked: dict[str, set[str]] = {}
        for (name, resource), seen in self._suspect.items():
            if seen < self.config.samples:
                continue
            marked.setdefault(name, set()).add(resource)
            if resource not in self.marked.get(name, set()):
                self.store.events.add(name, "noisy", offences[name, resource].message)
            if self.config.policy == "throttle":
                await self._throttle(name, offences[name, resource])
        self.marked = marked
        calm = {"cpu": not cpu_waiting, "disk": not disk_waiting}
        await self._lift_when_calm(calm)

    async def _throttle(self, name: str, offence: Offence) -> None:
        caps = self.throttled.get(name, {})
        if offence.resource in caps:
            return
        caps = {**caps, offence.resource: offence.cap}
        if await self._apply(name, caps):
            self.throttled[name] = caps
            shown = ", ".join(_show(k, v) for k, v in offence.cap.items())
            with acting_as("policy noisy", offence.message):
                self.store.events.add(
                    name, "throttled", f"held to its share ({shown}): {offence.message}"
                )

    async def _lift_when_calm(self, calm: dict[str, bool]) -> None:
        for name, caps in list(self.throttled.items()):
            quiet = all(calm[resource] for resource in caps)
            self._calm[name] = self._calm.get(name, 0) + 1 if quiet else 0
            if self._calm[name] < self.config.calm:
                continue
            self._calm.pop(name)
            del self.throttled[name]
            await self._apply(name, {})
            with acting_as("policy noisy", "nobody waits any more"):
                self.store.events.add(
                    name, "unthrottled", "back to its own limits: nobody waits any more"
                )

    async def _apply(self, name: str, caps: dict[str, dict[str, Any]]) -> bool:
        """Give ``name``'s QEMU its own limits tightened by ``caps``; False if it is gone."""
        vm = self.store.vms.find(name)
        if vm is None:
            self.throttled.pop(name, None)
            return False
        effective = Limits.from_json(vm.limits)
        for cap in caps.values():
            effective = tighter(effective, cap)
        try:
            held = await self.hold(name, effective)
        except BungalowError as exc:
            log.warning("could not throttle %s: %s", name, exc.message)
            return False
        if not held:
            self.throttled.pop(name, None)
        return held

    def forget(self, name: str) -> None:
        """The VM is gone or restarted: its marks and automatic caps go with it."""
        self.marked.pop(name, None)
        self.throttled.pop(name, None)
        self._calm.pop(name, None)
        self._suspect = {k: v for k, v in self._suspect.items() if k[0] != name}


def _show(key: str, value: Any) -> str:
    if key == "disk_bw":
        return f"disk bandwidth {format_size(int(value))}/s"
    return f"{key.replace('_', ' ')} {value}"


def entitled_shares(capacity: float, demand: dict[str, tuple[float, int]]) -> dict[str, float]:
    """Each VM's fair share of ``capacity`` CPUs: weighted max-min fairness.

    ``demand`` maps a VM to (CPUs it wants, its weight). A VM wanting less than
    its weighted share gets what it wants; what it leaves is shared among the
    others by weight, until every CPU is given or every demand met.
    """
    share = {name: 0.0 for name in demand}
    open_ = {name for name, (want, _) in demand.items() if want > 0}
    left = capacity
    while open_ and left > 1e-9:
        total = sum(demand[name][1] for name in open_)
        offer = {name: left * demand[name][1] / total for name in open_}
        satisfied = {n for n in open_ if demand[n][0] - share[n] <= offer[n]}
        if not satisfied:
            for name in open_:
                share[name] += offer[name]
            break
        for name in satisfied:
            left -= demand[name][0] - share[name]
            share[name] = demand[name][0]
        open_ -= satisfied
    return share
