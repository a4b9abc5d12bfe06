"""Metrics routes: JSON for `bungalow top`, and the Prometheus exposition at /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import HTTPConnection

from bungalow.daemon.api.access import caller_project
from bungalow.daemon.telemetry.metrics import Metrics
from bungalow.errors import NotFoundError

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


def _metrics(connection: HTTPConnection) -> Metrics:
    return cast(Metrics, connection.app.state.metrics)


@router.get("/v1/metrics")
async def all_metrics(connection: HTTPConnection) -> list[dict[str, Any]]:
    """The latest sample and per-second rates of every running VM."""
    metrics = _metrics(connection)
    out = []
    for name in sorted(_visible(metrics, connection)):
        sample, rates = metrics.latest(name)
        out.append(
            {
                "vm": name,
                "noisy": name in metrics.noisy,
                "noisy_for": sorted(metrics.noisy.get(name, ())),
                "throttled": sorted(metrics.watch.throttled.get(name, {})),
                "time": sample.time if sample else None,
                "stats": sample.domstats() if sample else {},
                "rates": rates,
            }
        )
    return out


@router.get("/v1/vms/{name}/metrics")
async def vm_metrics(name: str, connection: HTTPConnection) -> dict[str, Any]:
    """The VM's history: one entry per sample, oldest first (five minutes at most)."""
    metrics = _metrics(connection)
    metrics.manager.get(name)  # a VM that does not exist is a 404 with a sentence
    samples = metrics.history.get(name)
    if samples is None:
        raise NotFoundError(f"There are no metrics for {name} yet; it must be running.")
    return {"vm": name, "history": [{"time": s.time, **s.domstats()} for s in samples]}


def _visible(metrics: Metrics, connection: HTTPConnection) -> list[str]:
    """The sampled VMs the caller may see: all for the admin, a project's own for its token."""
    caller = caller_project(connection.state)
    if caller is None:
        return list(metrics.history)
    own = {vm.name for vm in metrics.manager.list() if vm.project == caller}
    return [name for name in metrics.history if name in own]


class _Collector:
    def __init__(self, metrics: Metrics, names: list[str]) -> None:
        self.metrics = metrics
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
                noisy.add_metric([name], 1 if name in self.metrics.noisy else 0)
        yield rss
        yield noisy


@router.get("/metrics")
async def prometheus(connection: HTTPConnection) -> Response:
    """The same numbers in Prometheus's text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    metrics = _metrics(connection)
    registry.register(_Collector(metrics, _visible(metrics, connection)))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
