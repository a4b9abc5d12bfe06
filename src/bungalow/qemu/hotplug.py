"""Plugging a NIC into a running micro VM and pulling it out again, over QMP.

microvm's own bus (virtio-mmio) cannot hot-plug, but with ``pcie=on`` it has a
PCIe host bridge, and empty root ports (``hp1``, ``hp2``: argv.py) take a
``virtio-net-pci`` while the guest runs. The Debian guest kernel's pciehp sees it
once the command line says ``pcie_ports=native`` (microvm's ACPI tables grant
no PCIe control otherwise). Only VMs that boot with NICs get the ports: they
cost a micro boot about 0.3 s, which sandboxes without networks do not pay.

A NIC plugged in this way lives on its root port until the VM stops; the next
start makes it an ordinary NIC like the others. A machine state with such a NIC
would need the same port layout to load, so a VM holding one is not saved
(snapshot, suspend, clone, fork) until it has been stopped and started.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from bungalow.errors import InvalidStateError, QemuError
from bungalow.qemu.argv import HOTPLUG_WORD
from bungalow.qemu.monitor import Monitor

#: Spare root ports a VM with NICs boots with.
HOTPLUG_PORTS = 2
#: Seconds the guest gets to let go of a NIC asked to be removed.
UNPLUG_TIMEOUT = 15.0
POLL_INTERVAL = 0.1
_PCI_NIC = "child<virtio-net-pci>"
_MMIO_NIC = "child<virtio-net-device>"


def can_hotplug(profile: str, cmdline: str | None) -> bool:
    """Whether a VM booted with ``cmdline`` (the one recorded at its start) has root ports
    its guest hot-plugs into: a micro VM that booted with NICs."""
    return profile == "micro" and HOTPLUG_WORD in (cmdline or "").split()


async def boot_nics(monitor: Monitor) -> set[str]:
    """The ids of the NICs the VM booted with (virtio-mmio devices) that QEMU still has."""
    found = await monitor.execute("qom-list", {"path": "/machine/peripheral"})
    entries = found if isinstance(found, list) else []
    return {
        str(entry["name"])
        for entry in entries
        if isinstance(entry, dict) and entry.get("type") == _MMIO_NIC
    }


async def drop_backend(monitor: Monitor, nic_id: str) -> None:
    """Remove the TAP backend ``nic_id`` whose device is already gone (an unplug cut short
    between the guest letting go and ``netdev_del``); nothing if there is none."""
    with contextlib.suppress(QemuError):
        await monitor.execute("netdev_del", {"id": nic_id})


async def plugged(monitor: Monitor) -> set[str]:
    """The ids of NICs plugged in while the VM runs (the PCI ones: boot NICs are mmio)."""
    found = await monitor.execute("qom-list", {"path": "/machine/peripheral"})
    entries = found if isinstance(found, list) else []
    return {
        str(entry["name"])
        for entry in entries
        if isinstance(entry, dict) and entry.get("type") == _PCI_NIC
    }


async def plug(monitor: Monitor, tap_fd: int, nic_id: str, mac: str) -> None:
    """Hand QEMU the TAP ``tap_fd`` and plug a virtio-net-pci ``nic_id`` with ``mac`` into the first
    free root port. InvalidStateError when every port is taken; nothing stays behind in
    QEMU on failure (the caller closes its own copy of the TAP)."""
    fdname = f"tap-{nic_id}"
    await monitor.pass_fd(tap_fd, fdname)
    try:
        await monitor.execute("netdev_add", {"type": "tap", "id": nic_id, "fd": fdname})
    except QemuError:
        await monitor.execute("closefd", {"fdname": fdname})
        raise
    try:
        for port in range(1, HOTPLUG_PORTS + 1):
            device = {"driver": "virtio-net-pci", "id": nic_id, "netdev": nic_id,
                      "bus": f"hp{port}", "mac": mac, "romfile": ""}  # fmt: skip
            try:
                await monitor.execute("device_add", device)
                return
            except QemuError as exc:
                if "in use" not in exc.message and "occupied" not in exc.message:
                    raise
        raise InvalidStateError(
            f"The VM's {HOTPLUG_PORTS} slots for NICs added while it runs are taken; stop "
            "and start it (its NICs then move to its own bus), then connect again."
        )
    except BaseException:
        await monitor.execute("netdev_del", {"id": nic_id})
        raise


async def unplug(monitor: Monitor, nic_id: str, timeout: float = UNPLUG_TIMEOUT) -> None:
    """Ask the guest to let go of the NIC ``nic_id``, wait until QEMU has removed it
    (the guest acknowledges through pciehp), then remove its TAP backend.

    QemuError when the guest does not let go within ``timeout`` seconds.
    """
    await monitor.execute("device_del", {"id": nic_id})
    deadline = time.monotonic() + timeout
    while nic_id in await plugged(monitor):
        if time.monotonic() >= deadline:
            raise QemuError(
                f"The guest did not release the NIC {nic_id} within {timeout:g} s; stop the "
                "VM to remove it."
            )
        await asyncio.sleep(POLL_INTERVAL)
    await monitor.execute("netdev_del", {"id": nic_id})
