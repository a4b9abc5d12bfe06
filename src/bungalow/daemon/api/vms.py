"""VM and host routes: create, list, inspect, start, stop, pause, resume, remove, limits."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Query

from bungalow import __version__
from bungalow.daemon.api import overhead
from bungalow.daemon.api.deps import Caller, Svc, creator
from bungalow.daemon.api.guest import error_json
from bungalow.daemon.api.responses import NdjsonResponse
from bungalow.daemon.api.schemas import (
    Health,
    HostInfo,
    LimitsUpdate,
    NicConnect,
    SshKeysAdd,
    StopRequest,
    VmCreate,
    VmInfo,
    WaitRequest,
)
from bungalow.daemon.api.schemas.fields import LabelFilter, ProjectName
from bungalow.daemon.policies.settings import idle_changes
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms import connections
from bungalow.daemon.vms.balloon import FloorChange
from bungalow.daemon.vms.limits import Limits
from bungalow.daemon.vms.nics import NetworkChoice
from bungalow.daemon.vms.requests import CreateRequest, Ownership
from bungalow.errors import BungalowError, ForbiddenError
from bungalow.units import parse_duration, parse_size

router = APIRouter(prefix="/v1")


@router.get("/health")
async def health() -> Health:
    return Health(ok=True, pid=os.getpid(), version=__version__)


@router.get("/vms")
async def list_vms(
    svc: Svc,
    caller: Caller,
    project: Annotated[ProjectName | None, Query(description="only this project's VMs")] = None,
    state: Annotated[list[VmState] | None, Query(description="only VMs in one of these")] = None,
    label: Annotated[
        list[LabelFilter] | None, Query(description="KEY=VALUE, or KEY: only VMs with every one")
    ] = None,
) -> list[VmInfo]:
    """The VMs the caller may see, narrowed by every filter given (400 with a sentence for
    a state that does not exist or a label filter that is not KEY or KEY=VALUE)."""
    wanted = vm_filter(project, state or [], label or [])
    return [
        svc.views.vm(vm)
        for vm in svc.vms.list()
        if (caller is None or vm.project == caller) and wanted(vm)
    ]


def vm_filter(
    project: str | None, states: list[VmState], labels: list[str]
) -> Callable[[VmRecord], bool]:
    """Whether a VM passes ``ls --project/--state/--label`` (each label ``KEY`` or
    ``KEY=VALUE``, as the schema's LabelFilter has checked)."""
    pairs = [label.partition("=") for label in labels]

    def wanted(vm: VmRecord) -> bool:
        return (
            (project is None or vm.project == project)
            and (not states or vm.state in states)
            and all(key in vm.labels and (not eq or vm.labels[key] == value)
                    for key, eq, value in pairs)
        )  # fmt: skip

    return wanted


def project_for(caller: str | None, asked: str | None) -> str | None:
    """The project a new VM belongs to: the token's, or the one the admin names."""
    if caller is not None and asked not in (None, caller):
        raise ForbiddenError(f"A token of project {caller} cannot make VMs in project {asked}.")
    return caller or asked


def limit_fields(body: LimitsUpdate) -> dict[str, object]:
    """The limits of ``body`` (its balloon floor, a column of its own, left out)."""
    return {key: getattr(body, key) for key in LimitsUpdate.model_fields if key != "memory_min"}


def floor_field(body: LimitsUpdate) -> FloorChange | None:
    """The balloon floor ``body`` asks for; None when it asks for no change."""
    return None if body.memory_min is None else FloorChange.parse(body.memory_min)


@router.post("/vms", status_code=201)
async def create_vm(body: VmCreate, svc: Svc, caller: Caller) -> VmInfo:
    expires_at, on_expiry = svc.leases.launch_terms(body.ttl, body.on_expiry)
    request = CreateRequest(
        name=body.name,
        image=body.image,
        cpus=body.cpus,
        memory=parse_size(body.memory, what="memory size"),
        disk=None if body.disk is None else parse_size(body.disk, what="disk size"),
        ports=tuple(body.ports),
        networks=tuple(NetworkChoice.parse(text) for text in body.networks),
        accel=body.accel,
        profile=body.profile,
        firmware=body.firmware,
        tpm=body.tpm,
        expires_at=expires_at,
        on_expiry=on_expiry,
        idle=idle_changes({"after": body.idle_after, "action": body.on_idle}),
        limits=Limits().changed(limit_fields(body)).to_json(),
        memory_min=FloorChange.parse(body.memory_min or 0).floor,
        ownership=Ownership(
            project=project_for(caller, body.project),
            owner=body.owner,
            labels=body.labels,
            created_by=creator(caller),
        ),
        user_data=body.user_data,
        ssh_keys=tuple(body.ssh_keys),
        iso=body.iso,
    )
    return svc.views.vm(await svc.vms.create(request))


@router.get("/vms/{name}")
async def get_vm(name: str, svc: Svc) -> VmInfo:
    return svc.views.vm(svc.vms.get(name))


@router.delete("/vms/{name}", status_code=204)
async def remove_vm(name: str, svc: Svc) -> None:
    await svc.vms.remove(name)


@router.post("/vms/{name}/start")
async def start_vm(name: str, svc: Svc) -> VmInfo:
    """Boot the VM, or carry it on from its saved state when it is suspended."""
    return svc.views.vm(await svc.suspender.start(name))


@router.post("/vms/{name}/stop")
async def stop_vm(name: str, svc: Svc, body: StopRequest | None = None) -> VmInfo:
    timeout = body.timeout if body is not None else 30.0
    return svc.views.vm(await svc.vms.stop(name, timeout))


@router.post("/vms/{name}/wait", response_class=NdjsonResponse)
async def wait_vm(name: str, svc: Svc, body: WaitRequest | None = None) -> NdjsonResponse:
    """Wait until the running VM's services have started: NDJSON ``progress`` events
    (systemd's state, its queued jobs, seconds so far) as they change, then ``done``
    (``running``, ``degraded`` with the failed units, or ``no-systemd``) or ``error``."""
    body = body or WaitRequest()
    timeout = parse_duration(body.timeout, what="timeout")
    events = await svc.vms.wait_services(name, timeout)

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield (json.dumps(event) + "\n").encode()
        except BungalowError as exc:
            yield (json.dumps(error_json(exc)) + "\n").encode()

    return NdjsonResponse(stream())


@router.post("/vms/{name}/pause")
async def pause_vm(name: str, svc: Svc) -> VmInfo:
    return svc.views.vm(await svc.vms.pause(name))


@router.post("/vms/{name}/resume")
async def resume_vm(name: str, svc: Svc) -> VmInfo:
    """Let a paused VM run again, or carry a suspended one on from its saved state."""
    return svc.views.vm(await svc.suspender.resume(name))


@router.patch("/vms/{name}/limits")
async def set_limits(name: str, body: LimitsUpdate, svc: Svc) -> VmInfo:
    """Change a VM's limits; a running VM's QEMU gets them at once."""
    return svc.views.vm(await svc.vms.set_limits(name, limit_fields(body), floor=floor_field(body)))


@router.post("/vms/{name}/networks")
async def connect_network(name: str, body: NicConnect, svc: Svc) -> VmInfo:
    """Give the VM a NIC on a network: at once on a running micro VM that booted on one,
    else from its next start (a running VM that cannot is refused with a sentence)."""
    await connections.connect(svc.vms, name, body.network, body.address)
    return svc.views.vm(svc.vms.get(name))


@router.delete("/vms/{name}/networks/{network}")
async def disconnect_network(name: str, network: str, svc: Svc) -> VmInfo:
    """Remove the VM's NIC on a network (at once if it was connected while it runs)."""
    await connections.disconnect(svc.vms, name, network)
    return svc.views.vm(svc.vms.get(name))


@router.post("/vms/{name}/ssh-keys")
async def add_ssh_keys(name: str, body: SshKeysAdd, svc: Svc) -> VmInfo:
    """Add SSH public keys to a VM: recorded (installed on every start) and, while it runs,
    installed in the guest now (what `bungalow ssh` does with the user's own key)."""
    return svc.views.vm(await svc.vms.add_ssh_keys(name, body.keys))


@router.get("/host")
async def host_info(svc: Svc) -> HostInfo:
    """The host's capacity, allocation, accelerators and firmwares, and its memory section:
    what the running VMs really take, share (KSM) and give back."""
    memory = await overhead.memory_info(svc, await svc.memory.measure())
    return svc.views.host().model_copy(update={"memory_use": memory})
