"""Connecting a VM to a network and disconnecting it: live where it can be, else recorded.

A stopped VM (or one that never ran) just has its NIC rows changed; its next
start boots with them. A running micro VM that booted with NICs takes a new
one at once on a spare PCIe root port (qemu/hotplug.py), configured by the agent,
and gives back one it took so; a NIC it booted with sits on microvm's own bus,
which cannot unplug, and a VM that booted without NICs has no ports: both are
refused with a sentence saying to stop the VM first. Suspended and paused VMs
are refused too: their saved or frozen devices are the ones they had.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.vms.nics import MAX_NICS, AttachedNic, Networks, hotplugged_config
from bungalow.errors import InvalidStateError, NotFoundError, UserError
from bungalow.host.net import tap
from bungalow.qemu import hotplug

if TYPE_CHECKING:
    from bungalow.daemon.state.records import VmRecord
    from bungalow.daemon.vms.manager import VmManager

#: Seconds the agent gets to configure a NIC plugged in while the VM runs.
SYNC_TIMEOUT = 30.0
#: States in which the VM has no QEMU, so a change is only recorded.
_AT_REST = (VmState.CREATED, VmState.STOPPED, VmState.FAILED)


async def connect(
    vms: VmManager, name: str, network: str, address: str | None = None
) -> AttachedNic:
    """Give VM ``name`` a NIC on ``network`` (``address`` or the next free one); a running
    VM gets it at once. UserError, InvalidStateError, ConflictError with a sentence."""
    networks = _networks(vms)
    async with vms.locked(name):
        vm = vms.get(name)
        nics = vms.nics_of(vm)
        if len(nics) >= MAX_NICS:
            raise UserError(f"{name} has {MAX_NICS} NICs already, the most a VM can have.")
        live = vm.state not in _AT_REST
        if live:
            _require_hotplug(vm, "connect")
        mac = vm.mac if not nics else None  # the first NIC keeps the VM's own MAC
        nic = await networks.attach(vm.id, vm.name, network, address, mac)
        if live:
            try:
                await _plug(vms, vm, nic)
            except BaseException:
                await networks.detach(vm.id, network)
                raise
        how = "at once" if live else "from its next start"
        vms.store.events.add(name, "connected", f"connected to {network} as {nic.address} {how}")
        return nic


async def disconnect(vms: VmManager, name: str, network: str) -> None:
    """Remove VM ``name``'s NIC on ``network``; a running VM's at once if it was plugged in
    while it ran. NotFoundError when it has none there."""
    networks = _networks(vms)
    async with vms.locked(name):
        vm = vms.get(name)
        nic = next((n for n in vms.nics_of(vm) if n.network == network), None)
        if nic is None:
            raise NotFoundError(f"{name} has no NIC on network {network}.")
        if vm.state not in _AT_REST:
            _require_hotplug(vm, "disconnect")
            monitor = vms.monitor(vm)
            nic_id = f"nic{nic.index}"
            if nic_id in await hotplug.plugged(monitor):
                await hotplug.unplug(monitor, nic_id)
            elif nic_id in await hotplug.boot_nics(monitor):
                raise InvalidStateError(
                    f"{name} booted with its NIC on {network}, which cannot be removed while "
                    f"it runs; stop it (`bungalow stop {name}`), then disconnect."
                )
            else:  # a disconnect cut short (bungalowd killed) after the guest let go
                await hotplug.drop_backend(monitor, nic_id)
        await networks.detach(vm.id, network)
        vms.store.events.add(name, "disconnected", f"disconnected from {network}")


def _networks(vms: VmManager) -> Networks:
    if vms.networks is None:
        raise UserError("Private networks need bungalowd to run as root.")
    return vms.networks


def _require_hotplug(vm: VmRecord, verb: str) -> None:
    if vm.state is not VmState.RUNNING or not hotplug.can_hotplug(vm.profile, vm.cmdline):
        raise InvalidStateError(
            f"{vm.name} is {vm.state} and cannot {verb} a network now: only a running micro "
            f"VM that booted on a network can; stop it (`bungalow stop {vm.name}`), "
            f"{verb} it, and start it again."
        )


async def _plug(vms: VmManager, vm: VmRecord, nic: AttachedNic) -> None:
    """Plug ``nic`` into the running VM and have its agent configure it; all or nothing."""
    monitor = vms.monitor(vm)
    pair = (tap.tap_name(vm.id, nic.index), nic.bridge)
    (opened,) = await asyncio.to_thread(tap.open_all, [pair])
    nic_id = f"nic{nic.index}"
    try:
        await hotplug.plug(monitor, opened.fd, nic_id, nic.mac)
    finally:
        opened.close()  # QEMU holds the TAP now, or nobody does and it is gone
    try:
        agent = await vms.agent_unlocked(vm, "configure its new NIC")
        # Bounded: the agent waits up to 10 s for the guest's kernel to name the NIC.
        await asyncio.wait_for(agent.sync(nics=[hotplugged_config(nic)]), SYNC_TIMEOUT)
    except BaseException:
        await hotplug.unplug(monitor, nic_id)
        raise
