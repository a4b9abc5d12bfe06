"""Network routes, for the host's admin only (access.py keeps project tokens out)."""

from __future__ import annotations

from fastapi import APIRouter

from bungalow.daemon.api.deps import Svc
from bungalow.daemon.api.schemas import (
    NetworkCreate,
    NetworkDetail,
    NetworkInfo,
    NetworkLease,
    NetworkNic,
)
from bungalow.daemon.networks.service import NetworkService
from bungalow.daemon.state.records import NetworkRecord

router = APIRouter(prefix="/v1/networks")


def _view(networks: NetworkService, network: NetworkRecord) -> NetworkInfo:
    return NetworkInfo(
        name=network.name,
        subnet=str(network.subnet),
        gateway=str(network.gateway.ip),
        bridge=network.bridge,
        domain=network.domain,
        created=network.created,
        vms=len(networks.members(network)),
    )


@router.post("", status_code=201)
async def create_network(body: NetworkCreate, svc: Svc) -> NetworkInfo:
    """Make a network: a bridge, dnsmasq (DHCP, DNS) and NAT out."""
    network = await svc.networks.create(body.name, body.subnet)
    return _view(svc.networks, network)


@router.get("")
async def list_networks(svc: Svc) -> list[NetworkInfo]:
    return [_view(svc.networks, network) for network in svc.networks.list()]


@router.get("/{name}")
async def inspect_network(name: str, svc: Svc) -> NetworkDetail:
    report = await svc.networks.inspect(name)
    nics = [
        NetworkNic(
            vm=member.vm, index=member.nic.index, mac=member.nic.mac,
            address=str(member.nic.address), name=f"{member.vm}.{member.nic.domain}",
        )
        for member in report.members
    ]  # fmt: skip
    leases = [
        NetworkLease(
            mac=lease.mac, address=str(lease.address), hostname=lease.hostname,
            expires=lease.expires or None,
        )
        for lease in report.leases
    ]  # fmt: skip
    info = _view(svc.networks, report.network)
    return NetworkDetail(
        **info.model_dump(), nics=nics, leases=leases, dnsmasq_pid=report.dnsmasq_pid
    )


@router.delete("/{name}", status_code=204)
async def remove_network(name: str, svc: Svc) -> None:
    await svc.networks.remove(name)
