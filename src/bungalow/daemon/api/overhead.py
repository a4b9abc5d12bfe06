"""``GET /v1/overhead``: what each running VM really costs the host in memory, and the sums
that ``host info`` shows too."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from fastapi import APIRouter

from bungalow.daemon.api.deps import Caller, Services, Svc
from bungalow.daemon.api.schemas import HostMemoryInfo, KsmInfo, Overhead, VmOverhead
from bungalow.daemon.telemetry.memory import HostMemory, VmMemory
from bungalow.host import ksm

router = APIRouter(prefix="/v1")


async def _visible(svc: Services, caller: str | None) -> list[VmMemory]:
    measured = await svc.memory.measure()
    if caller is None:
        return measured
    own = {vm.name for vm in svc.vms.list() if vm.project == caller}
    return [vm for vm in measured if vm.vm in own]


def _ksm_info(svc: Services, host: HostMemory) -> KsmInfo:
    standing = svc.ksm.current()
    settings = svc.ksm.ksm.settings()
    cpu = ksm.ksmd_cpu_ns()
    return KsmInfo(
        mode=svc.ksm.mode, holder=standing.holder, claims=standing.claims, run=settings.run,
        advisor_mode=settings.advisor_mode, pages_to_scan=settings.pages_to_scan,
        sleep_millisecs=settings.sleep_millisecs, full_scans=host.ksm_totals.full_scans,
        pages_shared=host.ksm_totals.pages_shared, pages_sharing=host.ksm_totals.pages_sharing,
        ksmd_cpu_seconds=None if cpu is None else cpu / 1e9,
    )  # fmt: skip


async def memory_info(svc: Services, vms: list[VmMemory]) -> HostMemoryInfo:
    """The host's memory section over ``vms``, with KSM's state and who holds it."""
    host = await svc.memory.host(vms)
    fields = asdict(host)
    del fields["ksm_totals"]
    return HostMemoryInfo(**fields, ksm=await asyncio.to_thread(_ksm_info, svc, host))


@router.get("/overhead")
async def overhead(svc: Svc, caller: Caller) -> Overhead:
    """Each running VM the caller may see: its QEMU's PSS and RSS, the guest RAM in it,
    QEMU's own overhead, what the guest uses, what KSM shares of it, what it gave back."""
    vms = await _visible(svc, caller)
    return Overhead(vms=[VmOverhead(**asdict(vm)) for vm in vms], host=await memory_info(svc, vms))
