"""Metrics routes: JSON for `bungalow top`, and the Prometheus exposition at /metrics."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from bungalow.daemon.api.deps import Caller, Svc
from bungalow.daemon.api.schemas import MetricsHistory, VmMetrics
from bungalow.daemon.policies.noisy import NoisyWatch
from bungalow.daemon.telemetry.memory import HostMemory, VmMemory
from bungalow.daemon.telemetry.metrics import Metrics
from bungalow.errors import NotFoundError
from bungalow.host import ksm

router = APIRouter()

#: Prometheus name, help, the Sample field, and the factor to the base unit.
_COUNTERS = (
    ("bungalow_vm_cpu_seconds", "CPU time of the VM's QEMU process.", "cpu_time", 1e-9),
    ("bungalow_vm_vcpu_delay_seconds", "Time the VM's vCPUs waited for a host CPU (steal).",
     "vcpu_delay", 1e-9),
    ("bungalow_vm_block_read_bytes", "Bytes read from the VM's disk.", "block_rd_bytes", 1),
    ("bungalow_vm_block_write_bytes", "Bytes written to the VM's disk.", "block_wr_bytes", 1),
    ("bungalow_vm_block_read_requests", "Read requests on the VM's disk.", "block_rd_reqs", 1),
    ("bungalow_vm_block_write_requests", "Write requests on the VM's disk.", "block_wr_reqs", 1),
    ("bungalow_vm_block_read_seconds", "Time spent on disk reads.", "block_rd_times", 1e-9),
    ("bungalow_vm_block_write_seconds", "Time spent on disk writes.", "block_wr_times", 1e-9),
    ("bungalow_vm_network_receive_bytes", "Bytes the guest received.", "net_rx_bytes", 1),
    ("bungalow_vm_network_transmit_bytes", "Bytes the guest sent.", "net_tx_bytes", 1),
    ("bungalow_vm_network_receive_packets", "Packets the guest received.", "net_rx_pkts", 1),
    ("bungalow_vm_network_transmit_packets", "Packets the guest sent.", "net_tx_pkts", 1),
)  # fmt: skip


@router.get("/v1/metrics")
async def all_metrics(svc: Svc, caller: Caller) -> list[VmMetrics]:
    """The latest sample and per-second rates of every running VM the caller may see."""
    out = []
    for name in sorted(_visible(svc, caller)):
        sample, rates = svc.metrics.latest(name)
        out.append(
            VmMetrics(
                vm=name,
                noisy=name in svc.noisy.marked,
                noisy_for=sorted(svc.noisy.marked.get(name, ())),
                throttled=sorted(svc.noisy.throttled.get(name, {})),
                time=sample.time if sample else None,
                stats=sample.domstats() if sample else {},
                rates=rates,
            )
        )
    return out


@router.get("/v1/vms/{name}/metrics")
async def vm_metrics(name: str, svc: Svc) -> MetricsHistory:
    """The VM's history: one entry per sample, oldest first (five minutes at most)."""
    svc.vms.get(name)  # a VM that does not exist is a 404 with a sentence
    samples = svc.metrics.history.get(name)
    if samples is None:
        raise NotFoundError(f"There are no metrics for {name} yet; it must be running.")
    return MetricsHistory(vm=name, history=[{"time": s.time, **s.domstats()} for s in samples])


def _visible(svc: Svc, caller: str | None) -> list[str]:
    """The sampled VMs the caller may see: all for the admin, a project's own for its token."""
    if caller is None:
        return list(svc.metrics.history)
    own = {vm.name for vm in svc.vms.list() if vm.project == caller}
    return [name for name in svc.metrics.history if name in own]


class _Collector:
    def __init__(self, metrics: Metrics, noisy: NoisyWatch, names: list[str]) -> None:
        self.metrics = metrics
        self.noisy = noisy
        self.names = names

    def collect(self) -> Iterator[Metric]:
        latest = {name: self.metrics.latest(name)[0] for name in self.names}
        for metric, text, key, factor in _COUNTERS:
            family = CounterMetricFamily(metric, text, labels=["vm"])
            for name, sample in latest.items():
                if sample is not None:
                    family.add_metric([name], getattr(sample, key) * factor)
            yield family
        rss = GaugeMetricFamily("bungalow_vm_memory_rss_bytes", "Resident memory of the VM's QEMU.",
                                labels=["vm"])  # fmt: skip
        noisy = GaugeMetricFamily("bungalow_vm_noisy", "1 while the VM starves others.",
                                  labels=["vm"])  # fmt: skip
        for name, sample in latest.items():
            if sample is not None:
                rss.add_metric([name], sample.rss)
                noisy.add_metric([name], 1 if name in self.noisy.marked else 0)
        yield rss
        yield noisy


#: Prometheus name, help, and the VmMemory field of each per-VM memory gauge (bytes).
_MEMORY_GAUGES = (
    ("bungalow_vm_memory_pss_bytes", "Proportional set size of the VM's QEMU.", "pss"),
    ("bungalow_vm_memory_guest_ram_bytes", "Of the QEMU's PSS, the guest's RAM.", "guest_ram"),
    ("bungalow_vm_memory_overhead_bytes", "QEMU's own memory: its PSS less the guest RAM.",
     "overhead"),
    ("bungalow_vm_memory_guest_used_bytes", "MemTotal - MemAvailable inside the guest.",
     "guest_used"),
    ("bungalow_vm_memory_ksm_merging_bytes", "The VM's pages KSM merged.", "ksm_merging"),
    ("bungalow_vm_memory_ksm_profit_bytes", "What KSM saves the VM, less its metadata.",
     "ksm_profit"),
    ("bungalow_vm_memory_given_back_bytes", "What the guest freed and the host took back.",
     "given_back"),
)  # fmt: skip


class _MemoryCollector:
    def __init__(self, vms: list[VmMemory], host: HostMemory) -> None:
        self.vms = vms
        self.host = host

    def collect(self) -> Iterator[Metric]:
        for metric, text, key in _MEMORY_GAUGES:
            family = GaugeMetricFamily(metric, text, labels=["vm"])
            for vm in self.vms:
                value = getattr(vm, key)
                if value is not None:
                    family.add_metric([vm.vm], value)
            yield family
        totals = self.host.ksm_totals
        yield GaugeMetricFamily(
            "bungalow_host_ksm_shared_bytes",
            "What KSM saves on the whole host.",
            value=self.host.shared,
        )
        yield GaugeMetricFamily(
            "bungalow_host_ksm_profit_bytes",
            "KSM's general_profit: savings less its metadata.",
            value=self.host.ksm_profit,
        )
        yield GaugeMetricFamily(
            "bungalow_host_ksm_pages_shared", "KSM pages in use.", value=totals.pages_shared
        )
        yield GaugeMetricFamily(
            "bungalow_host_ksm_pages_sharing",
            "Further places mapping KSM pages.",
            value=totals.pages_sharing,
        )
        cpu = ksm.ksmd_cpu_ns()
        if cpu is not None:
            yield CounterMetricFamily(
                "bungalow_host_ksmd_cpu_seconds",
                "CPU time of the ksmd kernel thread.",
                value=cpu / 1e9,
            )


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus(svc: Svc, caller: Caller) -> PlainTextResponse:
    """The same numbers in Prometheus's text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(svc.metrics, svc.noisy, _visible(svc, caller)))
    visible = set(_visible(svc, caller))
    memory = [vm for vm in await svc.memory.measure() if vm.vm in visible]
    registry.register(_MemoryCollector(memory, await svc.memory.host(memory)))
    return PlainTextResponse(generate_latest(registry), media_type="text/plain; version=0.0.4")
