"""Per-VM metrics, sampled by the daemon and kept as a short history.

Every :data:`INTERVAL` seconds each running VM is sampled: CPU time of its
QEMU, the run delay of its vCPU threads (time they were ready but had no host
CPU: steal), resident memory, its disk's counters from QEMU, and its network
counters from the guest's /proc/net/dev (the user-mode network keeps none on
the host). Names follow libvirt's domstats (``cpu.time``, ``vcpu.delay``,
``balloon.rss``, ``block.wr.bytes``, ``net.rx.bytes``...). Counters are
cumulative; :func:`rates` turns two samples into per-second rates.

The daemon also marks *noisy* VMs. Each VM is entitled to a share of the host's
CPUs by its CPU weight, as much as it wants up to that share, the rest going to
those that want more (weighted max-min fairness, :func:`entitled_shares`). A
VM is *starved* when it got clearly less than its entitlement while its vCPUs
waited for a host CPU more than :data:`STEAL_NOTICE` of the time; one that got
clearly more than its entitlement meanwhile, for :data:`NOISY_SAMPLES` samples
in a row, is *noisy*. With a control group per VM the kernel's scheduler
already divides CPU this way, so a noisy VM is one whose threads escape it or
a host without cgroups.
An automatic throttle of noisy VMs is not built yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field

from bungalow.daemon.lifecycle import VmState
from bungalow.daemon.limits import Limits
from bungalow.daemon.manager import VmManager
from bungalow.daemon.runtime import VmRuntime
from bungalow.errors import BungalowError
from bungalow.host import procstat
from bungalow.qemu.stats import block_stats, vcpu_threads

log = logging.getLogger(__name__)

INTERVAL = 2.0
HISTORY = 150  # five minutes at INTERVAL
#: Share of wall time a VM's vCPUs wait for a host CPU before the daemon calls it starved.
STEAL_NOTICE = 0.10
#: Share of the host's CPUs one VM must take to be the one starving the others.
MARGIN = 0.15  # of one CPU: below this, getting less or more than entitled is noise
#: Samples in a row a VM must look noisy before it is marked: a boot or a burst is not.
NOISY_SAMPLES = 3


@dataclass(frozen=True)
class Sample:
    time: float
    cpu_time: int = 0  # ns
    vcpu_delay: int = 0  # ns, summed over vCPUs
    rss: int = 0  # bytes
    block_rd_bytes: int = 0
    block_wr_bytes: int = 0
    block_rd_reqs: int = 0
    block_wr_reqs: int = 0
    block_rd_times: int = 0  # ns
    block_wr_times: int = 0  # ns
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
    net_rx_pkts: int = 0
    net_tx_pkts: int = 0

    def domstats(self) -> dict[str, float]:
        """The sample under libvirt's domstats names."""
        names = {
            "cpu_time": "cpu.time", "vcpu_delay": "vcpu.delay", "rss": "balloon.rss",
            "block_rd_bytes": "block.rd.bytes", "block_wr_bytes": "block.wr.bytes",
            "block_rd_reqs": "block.rd.reqs", "block_wr_reqs": "block.wr.reqs",
            "block_rd_times": "block.rd.times", "block_wr_times": "block.wr.times",
            "net_rx_bytes": "net.rx.bytes", "net_tx_bytes": "net.tx.bytes",
            "net_rx_pkts": "net.rx.pkts", "net_tx_pkts": "net.tx.pkts",
        }  # fmt: skip
        return {names[key]: value for key, value in asdict(self).items() if key in names}


def rates(old: Sample, new: Sample) -> dict[str, float]:
    """Per-second rates between two samples; CPU as a share of one host CPU."""
    seconds = max(new.time - old.time, 1e-6)
    values = {
        key: (getattr(new, key) - getattr(old, key)) / seconds
        for key in asdict(new)
        if key not in ("time", "rss")
    }
    values["cpu"] = values.pop("cpu_time") / 1e9
    values["steal"] = values.pop("vcpu_delay") / 1e9
    values["rss"] = new.rss
    return values


@dataclass
class Metrics:
    manager: VmManager
    history: dict[str, deque[Sample]] = field(default_factory=dict)
    noisy: set[str] = field(default_factory=set)
    _suspect: dict[str, int] = field(default_factory=dict)
    _threads: dict[int, list[int]] = field(default_factory=dict)

    def latest(self, name: str) -> tuple[Sample | None, dict[str, float]]:
        samples = self.history.get(name)
        if not samples:
            return None, {}
        if len(samples) < 2:
            return samples[-1], {}
        return samples[-1], rates(samples[-2], samples[-1])

    async def run(self) -> None:
        while True:
            began = time.monotonic()
            with contextlib.suppress(Exception):
                await self.sample_all()
            await asyncio.sleep(max(0.1, INTERVAL - (time.monotonic() - began)))

    async def sample_all(self) -> None:
        running = {
            vm.name: vm
            for vm in self.manager.list()
            if vm.state in (VmState.RUNNING, VmState.PAUSED)
        }
        for name in list(self.history):
            if name not in running:
                del self.history[name]
        live = {r.pid for r in self.manager.runtimes.values()}
        self._threads = {pid: t for pid, t in self._threads.items() if pid in live}
        for name, vm in running.items():
            runtime = self.manager.runtimes.get(name)
            if runtime is None:
                continue
            try:
                sample = await self._sample(runtime, guest=vm.state is VmState.RUNNING)
            except (OSError, BungalowError):
                continue
            self.history.setdefault(name, deque(maxlen=HISTORY)).append(sample)
        self._notice_noisy()

    async def _sample(self, runtime: VmRuntime, *, guest: bool) -> Sample:
        pid = runtime.pid
        monitor = runtime.monitor
        threads = self._threads.get(pid)
        if threads is None and monitor is not None:
            threads = self._threads[pid] = await vcpu_threads(monitor)
        block = await block_stats(monitor) if monitor is not None else None
        net = await _guest_net(runtime) if guest else (0, 0, 0, 0)
        return Sample(
            time=time.time(),
            cpu_time=procstat.cpu_time_ns(pid),
            vcpu_delay=sum(procstat.run_delay_ns(pid, tid) for tid in threads or []),
            rss=procstat.rss_bytes(pid),
            block_rd_bytes=block.rd_bytes if block else 0,
            block_wr_bytes=block.wr_bytes if block else 0,
            block_rd_reqs=block.rd_reqs if block else 0,
            block_wr_reqs=block.wr_reqs if block else 0,
            block_rd_times=block.rd_time_ns if block else 0,
            block_wr_times=block.wr_time_ns if block else 0,
            net_rx_bytes=net[0],
            net_rx_pkts=net[1],
            net_tx_bytes=net[2],
            net_tx_pkts=net[3],
        )

    def _notice_noisy(self) -> None:
        """Mark VMs taking more than their share while others' vCPUs wait; log the change."""
        cpus = self.manager.capacity().cpus
        vms = {vm.name: vm for vm in self.manager.list()}
        current = {n: r for n, r in ((n, self.latest(n)[1]) for n in self.history) if r}
        demand = {
            n: (min(r["cpu"] + r["steal"], vms[n].cpus), Limits.from_json(vms[n].limits).cpu_weight)
            for n, r in current.items()
            if n in vms
        }
        entitled = entitled_shares(float(cpus), demand)
        starved = [
            n
            for n, r in current.items()
            if n in entitled
            and r["steal"] / vms[n].cpus > STEAL_NOTICE
            and r["cpu"] < entitled[n] - MARGIN
        ]
        over = {
            n
            for n, r in current.items()
            if n in entitled and starved and r["cpu"] > entitled[n] + MARGIN
        }
        self._suspect = {n: self._suspect.get(n, 0) + 1 for n in over}
        noisy = {n for n, seen in self._suspect.items() if seen >= NOISY_SAMPLES}
        for name in noisy - self.noisy:
            who = ", ".join(sorted(starved))
            message = (
                f"takes {current[name]['cpu']:.2f} CPUs, entitled to {entitled[name]:.2f}, "
                f"while {who} wait for CPU"
            )
            self.manager.store.add_event(name, "noisy", message)
        self.noisy = noisy


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


async def _guest_net(runtime: VmRuntime) -> tuple[int, int, int, int]:
    """rx bytes, rx packets, tx bytes, tx packets of the guest's eth0."""
    agent = runtime.agent
    if agent is None or agent.closed:
        return (0, 0, 0, 0)
    data = b""
    async for chunk in agent.read_file("/proc/net/dev"):
        data += chunk
    for line in data.decode(errors="replace").splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == "eth0":
            fields = counters.split()
            return int(fields[0]), int(fields[1]), int(fields[8]), int(fields[9])
    return (0, 0, 0, 0)
