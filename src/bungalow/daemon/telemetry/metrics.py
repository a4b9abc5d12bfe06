"""Per-VM metrics, sampled by the daemon and kept as a short history.

Every :data:`INTERVAL` seconds each running VM is sampled: CPU time of its
QEMU, the run delay of its vCPU threads (time they were ready but had no host
CPU: steal), resident memory, its disk's counters from QEMU, and its network
counters from the guest's /proc/net/dev (the user-mode network keeps none on
the host). Names follow libvirt's domstats (``cpu.time``, ``vcpu.delay``,
``balloon.rss``, ``block.wr.bytes``, ``net.rx.bytes``...). Counters are
cumulative; :func:`rates` turns two samples into per-second rates.

Each interval's rates go to the listeners the daemon wires in (the noisy
neighbour watch of policies/noisy.py marks the VMs starving others and, with
its policy on, holds them to their share).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field

from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms.manager import VmManager
from bungalow.daemon.vms.runtime import VmRuntime
from bungalow.errors import BungalowError
from bungalow.host import procstat
from bungalow.qemu.stats import block_stats, vcpu_threads

log = logging.getLogger(__name__)

INTERVAL = 2.0
HISTORY = 150  # five minutes at INTERVAL


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
    block_fl_reqs: int = 0  # flushes (fsync in the guest)
    block_fl_times: int = 0  # ns
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
            "block_fl_reqs": "block.fl.reqs", "block_fl_times": "block.fl.times",
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


#: Told of every interval: the rates of each sampled VM, and the running VMs' records.
Listener = Callable[[dict[str, dict[str, float]], dict[str, VmRecord]], Awaitable[None]]


@dataclass
class Metrics:
    vms: VmManager
    listeners: Sequence[Listener] = ()
    history: dict[str, deque[Sample]] = field(default_factory=dict)
    _threads: dict[int, list[int]] = field(default_factory=dict)

    def latest(self, name: str) -> tuple[Sample | None, dict[str, float]]:
        """The VM's newest sample and its per-second rates since the one before ({} if none)."""
        samples = self.history.get(name)
        if not samples:
            return None, {}
        if len(samples) < 2:
            return samples[-1], {}
        return samples[-1], rates(samples[-2], samples[-1])

    def rates(self, name: str) -> dict[str, float]:
        return self.latest(name)[1]

    async def run(self) -> None:
        """Sample every :data:`INTERVAL` seconds for as long as the daemon runs."""
        while True:
            began = time.monotonic()
            try:
                await self.sample_all()
            except Exception:
                log.exception("sampling the VMs' metrics failed")
            await asyncio.sleep(max(0.1, INTERVAL - (time.monotonic() - began)))

    async def sample_all(self) -> None:
        running = {
            vm.name: vm for vm in self.vms.list() if vm.state in (VmState.RUNNING, VmState.PAUSED)
        }
        for name in list(self.history):
            if name not in running:
                del self.history[name]
        live = {r.pid for r in self.vms.runtimes.values()}
        self._threads = {pid: t for pid, t in self._threads.items() if pid in live}
        for name, vm in running.items():
            runtime = self.vms.runtime(name)
            if runtime is None:
                continue
            try:
                sample = await self._sample(runtime, guest=vm.state is VmState.RUNNING)
            except (OSError, BungalowError):
                continue
            self.history.setdefault(name, deque(maxlen=HISTORY)).append(sample)
        current = {n: r for n, r in ((n, self.rates(n)) for n in self.history) if r}
        for listener in self.listeners:
            await listener(current, running)

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
            block_fl_reqs=block.flush_reqs if block else 0,
            block_fl_times=block.flush_time_ns if block else 0,
            net_rx_bytes=net[0],
            net_rx_pkts=net[1],
            net_tx_bytes=net[2],
            net_tx_pkts=net[3],
        )


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
