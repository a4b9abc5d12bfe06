"""The rows the daemon keeps, as frozen dataclasses: VMs, snapshots, projects, deleted VMs,
usage intervals, networks and their NICs.

Records are plain values: the layers below the daemon (qemu, images, guest)
never see SQL, and the daemon's own services change a row only through the
intent-named writes of :mod:`bungalow.daemon.state` (``set_state``,
``touch_active``...), never by writing a whole record back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Literal

from bungalow.daemon.state.lifecycle import VmState


class Operation(StrEnum):
    """The lifecycle operation under way on a VM, written before it starts and cleared after.

    A daemon killed half-way leaves it in the row, so the next one knows what was
    interrupted and finishes it or rolls it back (vms/recovery.py, snapshots/recovery.py).
    """

    #: A VM being made (launch, clone, sandbox, pool refill, restore-deleted): rolled back.
    CREATE = "create"
    START = "start"
    STOP = "stop"
    REMOVE = "remove"
    #: A running VM paused while its memory is saved into a snapshot.
    SNAPSHOT = "snapshot"
    RESTORE = "restore"
    SUSPEND = "suspend"
    WAKE = "wake"


class Purpose(StrEnum):
    """Why a snapshot exists; decides who may see it and when it is collected."""

    #: Made by ``snapshot create``.
    USER = "user"
    #: The pre-booted machine sandboxes of one shape start from.
    TEMPLATE = "template"
    #: Made for ``clone`` without a snapshot name, or ``fork``; kept while clones use it.
    FORK = "fork"
    #: A suspended VM's memory, devices and disk.
    SUSPEND = "suspend"
    #: A snapshot-and-delete'd VM's way back, kept for the retention.
    DELETED = "deleted"
    #: A deleted VM's save after ``restore-deleted``: an ordinary base from then on.
    RESTORED = "restored"


@dataclass(frozen=True)
class VmRecord:
    """What the daemon remembers about a VM between restarts.

    Sizes are bytes, times seconds since the epoch (the daemon's Clock).
    """

    id: str
    name: str
    state: VmState
    image_id: str
    image_name: str
    profile: str
    cpus: int
    memory: int
    disk_size: int
    ports: list[str] = field(default_factory=list)
    accel: str = "auto"
    mac: str = ""
    pid: int | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    error: str | None = None
    #: Written to /etc/machine-id in the guest; unique per VM, clones included.
    machine_id: str = ""
    #: The kernel command line the running guest booted with (kept by its snapshots).
    cmdline: str | None = None
    #: The snapshot whose disk this VM's disk is layered on (a clone's origin).
    base_snapshot: str | None = None
    #: The VM this one was cloned or forked from, by name.
    parent: str | None = None
    sandbox: bool = False
    #: When the daemon removes (or stops) the VM on its own; a sandbox's timeout.
    expires_at: float | None = None
    on_expiry: str = "delete"
    #: Set while the VM waits, started, in the warm pool of this template snapshot.
    pool: str | None = None
    #: CPU weight and cap, memory limit, disk IOPS and bandwidth (vms/limits.py).
    limits: dict[str, Any] = field(default_factory=dict)
    #: The project the VM belongs to; None for the host admin's own VMs.
    project: str | None = None
    #: The person or team the VM is for (``--owner``; by default the user who made it).
    owner: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: Who asked for the VM: ``admin`` or ``project NAME`` (the token that made it).
    created_by: str = ""
    #: What it was made from: ``image debian-12``, ``snapshot s1 of web``, ...
    origin: str = ""
    #: This VM's own idle policy (``after``, ``action``, thresholds); see policies/idle.py.
    idle: dict[str, Any] = field(default_factory=dict)
    #: When a guest signal or a use of exec, files or console last showed activity.
    last_active: float | None = None
    #: The deadline a ``lease-warning`` event was recorded for (a renewal warns anew).
    lease_warned: float | None = None
    #: The operation under way, None when none is (see :class:`Operation`).
    operation: Operation | None = None
    #: cloud-init user-data (``launch --cloud-init``), checked; the VM's NoCloud seed is made
    #: from it with the VM's id as instance-id. Clones inherit it. None: no seed.
    user_data: str | None = None
    #: SSH public keys (``type base64 [comment]``) the agent installs for root on every start.
    ssh_keys: list[str] = field(default_factory=list)
    #: The ``iso`` image in the VM's CD-ROM drive (its id); None when the tray is empty.
    media: str | None = None
    #: ``bios`` (SeaBIOS), ``uefi`` or ``uefi-secure`` (OVMF; the VM keeps its own
    #: variable store, efivars.fd, in its directory): qemu/firmware/.
    firmware: str = "bios"
    #: A TPM 2.0 (swtpm, its state in the VM's directory, tpm/).
    tpm: bool = False
    #: The balloon floor in bytes (``--memory-min``): under host memory pressure the daemon
    #: may take the VM's memory down to this (policies/pressure.py); None: never ballooned.
    memory_min: int | None = None

    def with_changes(self, **changes: Any) -> VmRecord:
        """A copy with ``changes``: for records not yet inserted (a plan), never to write back."""
        return replace(self, **changes)


@dataclass(frozen=True)
class SnapshotRecord:
    """A saved state: ``full`` (memory, devices, disk) or ``disk`` (a stopped VM's disk).

    ``vm_id`` is empty for a snapshot of no VM: a template, a fork's, a deleted
    VM's, or one whose VM is gone while clones still stand on it. ``size`` is
    the bytes its files take on the host.
    """

    id: str
    name: str
    vm_id: str
    vm_name: str
    kind: Literal["full", "disk"]
    purpose: Purpose
    image_id: str
    profile: str
    cpus: int
    memory: int
    disk_size: int
    accel: str
    qemu: str
    digests: dict[str, str]
    size: int
    cmdline: str | None = None
    base_snapshot: str | None = None
    template_key: str | None = None
    created: float = field(default_factory=time.time)
    #: The networks its VM had NICs on, in NIC order (a full snapshot's NIC devices).
    networks: list[str] = field(default_factory=list)
    #: Its VM's firmware and TPM: a clone gets the same (and the snapshot's efivars.fd, tpm/).
    firmware: str = "bios"
    tpm: bool = False
    #: The ``iso`` image in its VM's CD-ROM drive (None: empty, or no drive): a restore puts
    #: it back and a clone gets it, so a full snapshot's guest finds the medium it had.
    media: str | None = None

    def with_changes(self, **changes: Any) -> SnapshotRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class Project:
    """A project: its token's sha256, quotas (None: no limit; bytes for memory and disk)."""

    name: str
    token_hash: str
    max_vcpus: int | None = None
    max_memory: int | None = None
    max_disk: int | None = None
    max_vms: int | None = None
    created: float = 0.0
    #: The project's default idle policy (policies/settings.py), below each VM's own.
    idle: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeletedVm:
    """A VM removed by snapshot-and-delete that ``restore-deleted`` can still bring back."""

    name: str
    snapshot: str
    project: str | None
    deleted: float
    keep_until: float
    #: What of the VM's record comes back with it (owner, labels, limits, idle, ports...).
    record: dict[str, Any]


@dataclass(frozen=True)
class Rates:
    """Prices per unit of time; the defaults are of the order of a public cloud's
    on-demand general-purpose machines and block storage."""

    vcpu_hour: float = 0.02
    memory_gib_hour: float = 0.0025
    disk_gib_month: float = 0.08


#: The kinds of usage interval.
RUNNING = "running"
STOPPED = "stopped"
SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class Interval:
    """What one VM (or one of its snapshots) held from ``began`` to ``ended`` (None: open).

    ``kind`` is running (vCPUs and memory held; paused counts), stopped (disk only)
    or snapshot (``disk`` bytes of snapshot files); the rates are those in force
    when it opened. Memory and disk in bytes.
    """

    vm_id: str
    vm_name: str
    kind: str
    cpus: int
    memory: int
    disk: int
    began: float
    ended: float | None
    rates: Rates = field(default_factory=Rates)
    owner: str | None = None
    project: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    snapshot_id: str | None = None


class NetworkOperation(StrEnum):
    """The change under way on a network, written before its first step and cleared after
    the last, so a daemon killed half-way settles it at start (daemon/networks/recovery.py)."""

    #: Bridge, dnsmasq and rules being made: rolled back (nothing half made is kept).
    CREATE = "create"
    #: Being taken down: finished.
    REMOVE = "remove"


@dataclass(frozen=True)
class NetworkRecord:
    """A private network: a bridge whose host address is ``gateway`` (the subnet's first),
    one dnsmasq serving names under ``domain``, and NAT out."""

    id: int
    name: str
    subnet: IPv4Network
    gateway: IPv4Interface
    bridge: str
    domain: str
    created: float
    operation: NetworkOperation | None = None


@dataclass(frozen=True)
class NicRecord:
    """A VM's NIC on a network: ``index`` orders a VM's NICs (0 first, in attach order);
    ``hostname`` is the VM's name as DNS serves it under the network's domain."""

    vm_id: str
    network_id: int
    index: int
    mac: str
    address: IPv4Address
    hostname: str
