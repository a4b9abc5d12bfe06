"""A pc VM's screen and keyboard: screenshot, send-keys, type and the one-time VNC door.

Only pc VMs have a display (``MachineSpec.display``: VGA and a VNC server on a
Unix socket); a micro VM is refused with a sentence. Each action runs under the
VM's lock and on a running VM only (``require_running``'s sentence otherwise), so
it never races a stop, and QEMU does the work (qemu/display.py).
"""

from __future__ import annotations

import contextlib
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from bungalow.daemon.state.lifecycle import VmState, require_running
from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms.manager import VmManager
from bungalow.daemon.vms.vnc_relay import LIFETIME, VncRelay
from bungalow.errors import InvalidStateError, QemuError, UserError
from bungalow.qemu import display
from bungalow.qemu.argv import RunFiles
from bungalow.qemu.keys import Combo, combos_of, text_combos
from bungalow.qemu.monitor import Monitor

_PASSWORD_ALPHABET = string.ascii_letters + string.digits
VNC_HOST = "127.0.0.1"


@dataclass(frozen=True)
class VncEndpoint:
    """Where a VNC viewer connects once, with which password, for how many seconds."""

    host: str
    port: int
    password: str
    expires_in: int

    @property
    def url(self) -> str:
        return f"vnc://{self.host}:{self.port}"


def _screen_monitor(
    vms: VmManager, vm: VmRecord, action: str, *, paused_too: bool = False
) -> Monitor:
    """The monitor of ``vm`` if it has a screen and runs (or, with ``paused_too``, is
    paused: its screen can be read, not typed on); a sentence otherwise."""
    if vm.profile != "pc":
        raise UserError(
            f"Cannot {action}: the VM {vm.name} is a micro VM, which has no display or "
            "keyboard; launch a VM with --profile pc for one."
        )
    if not (paused_too and vm.state == VmState.PAUSED):
        require_running(vm.name, vm.state, action, vm.error)
    return vms.monitor(vm)


async def screenshot(vms: VmManager, name: str) -> bytes:
    """What the VM's display shows now, as PNG bytes."""
    async with vms.locked(name):
        monitor = _screen_monitor(vms, vms.get(name), "take a screenshot", paused_too=True)
        return await display.screendump(monitor)


async def send_keys(vms: VmManager, name: str, keys: list[str]) -> None:
    """Press each key combination (``ctrl-alt-delete``, ``ret``) in turn; UserError naming
    a key QEMU does not know, before any is pressed."""
    await _press(vms, name, "send keys", combos_of(keys))


async def type_text(vms: VmManager, name: str, text: str, layout: str) -> None:
    """Type ``text`` on the VM's keyboard as a guest using ``layout`` reads it; UserError
    naming a character the layout cannot type, before any is typed."""
    await _press(vms, name, "type", text_combos(text, layout))


async def _press(vms: VmManager, name: str, action: str, combos: list[Combo]) -> None:
    """Press ``combos`` one after another, holding the VM's keyboard (not its lock: 4096
    characters take minutes, and a stop need not wait for them)."""
    async with vms.locked(name):
        monitor = _screen_monitor(vms, vms.get(name), action)
        runtime = vms.runtime(name)
    if runtime is None:
        raise InvalidStateError(f"bungalowd has no connection to {name} now; retry in a moment.")
    async with runtime.keyboard:
        try:
            await display.send_combos(monitor, combos)
        except QemuError:
            vm = vms.store.vms.find(name)
            if vm is not None and vm.state is VmState.RUNNING and monitor.connected:
                raise
            raise InvalidStateError(
                f"Cannot {action}: the VM {name} stopped before every key was pressed; "
                "start it and send them again."
            ) from None


async def open_vnc(vms: VmManager, name: str) -> VncEndpoint:
    """A fresh one-time endpoint: a new listener and password, replacing the VM's last ones."""
    async with vms.locked(name):
        vm = vms.get(name)
        monitor = _screen_monitor(vms, vm, "open a VNC endpoint")
        runtime = vms.runtime(name)
        if runtime is None:
            raise InvalidStateError(
                f"bungalowd has no connection to {name} now; retry in a moment."
            )
        if runtime.vnc_relay is not None:
            await runtime.vnc_relay.close()
            runtime.vnc_relay = None
        password = _new_password()
        await display.set_vnc_password(monitor, password, LIFETIME)

        async def expire() -> None:
            await display.expire_vnc_password(monitor)

        runtime.vnc_relay = await VncRelay.open(RunFiles(vms.run_dir(vm)).vnc, expire)
        return VncEndpoint(VNC_HOST, runtime.vnc_relay.port, password, LIFETIME)


def _new_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(display.VNC_PASSWORD_LENGTH))


async def vnc_password(vms: VmManager, name: str, lifetime: int) -> str:
    """A fresh VNC password for the running pc VM ``name``, good for ``lifetime`` seconds
    (the dashboard's websocket bridge: api/dashboard/vnc.py); the last one stops working."""
    async with vms.locked(name):
        monitor = _screen_monitor(vms, vms.get(name), "open its screen")
        password = _new_password()
        await display.set_vnc_password(monitor, password, lifetime)
        return password


async def expire_vnc_password(vms: VmManager, name: str) -> None:
    """No new VNC client of ``name`` gets in from now on; nothing if it has no monitor now
    (QEMU's own expiry of the password still holds)."""
    runtime = vms.runtime(name)
    if runtime is None or runtime.monitor is None:
        return
    with contextlib.suppress(QemuError):
        await display.expire_vnc_password(runtime.monitor)


def vnc_socket(vms: VmManager, name: str) -> Path:
    """Where the VM's QEMU serves VNC (a Unix socket in its run directory)."""
    return RunFiles(vms.run_dir(vms.get(name))).vnc
