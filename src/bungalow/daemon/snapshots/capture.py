"""Saving a VM's state into a snapshot directory: a running VM whole, a stopped one's disk.

A running VM's memory goes into a flat file a clone can map (see
docs/architecture.md, "Snapshots"), which QEMU 7.2 cannot write from a
migration stream directly. So the VM is paused and migrated, over a
socket pair, into a *converter*: a second QEMU of the same shape that never runs,
whose RAM is that file mapped shared. The converter then saves only its device
state (``x-ignore-shared``), and quits. Once both have saved, neither holds
the disk active (QEMU flushes and lets go of it at the end of a migration),
which is when the disk is copied. The source then carries on as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
from pathlib import Path

from bungalow.daemon.vms import firmware as firmware_files
from bungalow.daemon.vms import tpm
from bungalow.daemon.vms.confine import launch_confined
from bungalow.daemon.vms.nics import with_taps
from bungalow.errors import QemuError
from bungalow.host.files import sparse_copy
from bungalow.qemu import migration
from bungalow.qemu.argv import MachineSpec, RunFiles
from bungalow.qemu.monitor import Monitor
from bungalow.qemu.process import terminate, wait_exit

#: The files of a full snapshot, and of a disk-only one.
FULL_FILES = ("ram", "state", "disk.qcow2")
DISK_FILES = ("disk.qcow2",)
#: Seconds a save may take; memory moves at hundreds of MB/s even under load.
SAVE_TIMEOUT = 300.0
#: Seconds a converter gets to exit once told to quit.
QUIT_TIMEOUT = 10.0


async def capture_running(monitor: Monitor, spec: MachineSpec, target: Path, vm_id: str) -> None:
    """Write the VM ``vm_id`` behind ``monitor`` (started from ``spec``) into ``target``.

    The VM is paused for the duration and continues afterwards if it was
    running; on failure ``target`` may hold partial files, which the caller
    removes.
    """
    was_running = await monitor.status() == "running"
    if was_running:
        await monitor.stop()
    converter = dataclasses.replace(
        spec,
        ports=(),
        net_relay=False,  # the stream carries the NIC, not its backend: no shaper needed
        run_dir=target / "convert",
        memory_file=target / "ram",
        memory_shared=True,
        incoming=True,
    )
    if converter.tpm_socket is not None:
        # The stream carries the TPM's state (QEMU's tpm-emulator fetches it from swtpm):
        # the converter's own swtpm takes it in and hands it back for its save.
        files = RunFiles(converter.run_dir)
        converter = dataclasses.replace(
            converter, tpm_socket=files.swtpm_socket, tpm_state=converter.run_dir / "tpm"
        )
    pid: int | None = None
    try:
        await asyncio.to_thread(tpm.start_for, converter)
        async with with_taps(converter, vm_id, ()) as tapped:
            pid = await asyncio.to_thread(launch_confined, tapped)
        files = RunFiles(converter.run_dir)
        async with await Monitor.connect(files.qmp, timeout=10) as receiver:
            await migration.send(monitor, receiver, SAVE_TIMEOUT)
            await migration.set_ignore_shared(receiver)
            await migration.save(receiver, target / "state", SAVE_TIMEOUT)
            # Both QEMUs have now flushed and let go of the disk: copy it as it stands, and
            # the VM's variable store and TPM state with it.
            await asyncio.to_thread(sparse_copy, spec.disk, target / "disk.qcow2")
            await asyncio.to_thread(firmware_files.capture, spec.disk.parent, target)
            await receiver.quit()
        # Collect the converter (bungalowd is a subreaper: an exited one would stay a zombie).
        await asyncio.wait_for(wait_exit(pid), timeout=QUIT_TIMEOUT)
    except QemuError as exc:
        why = _last_line(RunFiles(converter.run_dir).stderr)
        if why:
            message = f"{exc.message.rstrip('.')} (the receiving QEMU said: {why})."
            raise QemuError(message) from None
        raise
    finally:
        if pid is not None:
            # terminate() also reaps one that has already exited.
            await asyncio.to_thread(terminate, pid, converter.run_dir, 5.0)
        await asyncio.to_thread(tpm.stop, converter)
        shutil.rmtree(converter.run_dir, ignore_errors=True)
        if was_running:
            with contextlib.suppress(Exception):
                await monitor.cont()


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    return next((line for line in reversed(lines) if line), "")[:300]


async def capture_disk(disk: Path, target: Path) -> None:
    """A stopped VM's disk, copied with its holes, and its variable store and TPM state."""
    await asyncio.to_thread(sparse_copy, disk, target / "disk.qcow2")
    await asyncio.to_thread(firmware_files.capture, disk.parent, target)
