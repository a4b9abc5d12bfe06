"""What the daemon answers: VMs, snapshots, images, the host, projects, networks, costs,
metrics.

Sizes are bytes, times seconds since the epoch (the daemon's clock), durations
seconds, money in the currency of ``[prices]``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from bungalow.daemon.api.schemas.memory import HostMemoryInfo
from bungalow.daemon.state.lifecycle import VmState
from bungalow.daemon.state.records import Operation, Purpose


class VmCostInfo(BaseModel):
    so_far: float = Field(description="all the VM has cost until now, its snapshots included")
    per_hour: float = Field(description="what it costs per hour as it is now")
    currency: str


class NicInfo(BaseModel):
    """A VM's NIC on a private network: its address with the network's prefix."""

    network: str
    address: str
    mac: str


class VmInfo(BaseModel):
    id: str
    name: str
    state: VmState
    image: str
    image_id: str
    profile: str
    cpus: int
    memory: int
    disk_size: int
    disk_used: int
    ports: list[str]
    accel: str
    mac: str
    pid: int | None
    created: float
    started: float | None
    error: str | None
    sandbox: bool = False
    expires_at: float | None = None
    parent: str | None = None
    base_snapshot: str | None = None
    snapshots_used: int = 0
    pooled: bool = Field(default=False, description="waiting, started, in the sandbox pool")
    limits: dict[str, float | int] = Field(default_factory=dict)
    limits_pending: list[str] = Field(
        default_factory=list, description="limits recorded that apply from the VM's next start"
    )
    project: str | None = None
    owner: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    created_by: str = ""
    origin: str = ""
    cost: VmCostInfo | None = None
    on_expiry: str | None = Field(default=None, description="what the lease's end does")
    expires_in: float | None = Field(default=None, description="seconds left on the lease")
    lease_warned: bool = Field(default=False, description="the lease-warning was recorded")
    idle: dict[str, float | str] = Field(default_factory=dict, description="its own idle policy")
    quiet_for: float | None = Field(default=None, description="seconds since last activity")
    operation: Operation | None = Field(
        default=None, description="the lifecycle operation under way, if any"
    )
    networks: list[NicInfo] = Field(
        default_factory=list, description="NICs on private networks, first one first"
    )
    cloud_init: bool = Field(default=False, description="has a cloud-init NoCloud seed")
    ssh_keys: list[str] = Field(
        default_factory=list, description="fingerprints (SHA256:...) of its SSH keys for root"
    )
    media: str | None = Field(
        default=None, description="the ISO image in its CD-ROM drive; null: the tray is empty"
    )
    firmware: str = Field(default="bios", description="bios, uefi or uefi-secure")
    tpm: bool = Field(default=False, description="has a TPM 2.0 (swtpm)")
    memory_min: int | None = Field(
        default=None, description="balloon floor in bytes; null: never ballooned"
    )
    balloon: bool = Field(
        default=False,
        description="booted (last) with a virtio-balloon and free page reporting, and, while "
        "it runs, not from a snapshot's memory (which keeps what its guest frees)",
    )


class SnapshotInfo(BaseModel):
    id: str
    name: str
    vm: str
    kind: Literal["full", "disk"] = Field(
        description="full (memory, devices, disk) or disk (disk only)"
    )
    purpose: Purpose
    created: float
    image_id: str
    cpus: int
    memory: int
    disk_size: int
    accel: str
    qemu: str
    size: int = Field(description="bytes the snapshot's files take on the host")
    base_snapshot: str | None
    used_by: list[str]


class FileStat(BaseModel):
    """A path in a guest; the other fields only when it exists."""

    exists: bool
    type: str | None = Field(default=None, description="file, dir, link or other")
    size: int | None = Field(default=None, description="bytes")
    mode: int | None = Field(default=None, description="permission bits")


class ErrorDetail(BaseModel):
    code: str = Field(description="the error class's code (bungalow.errors)")
    message: str = Field(description="one sentence: what is wrong and what to do")


class ErrorBody(BaseModel):
    """What every refused or failed request answers, with its class's HTTP status."""

    error: ErrorDetail


class ImageInfo(BaseModel):
    id: str
    name: str
    kind: str
    flavour: Literal["micro", "server"] = Field(
        description="server: systemd is the guest's init; micro: the agent is (no init system)"
    )
    size: int
    virtual_size: int
    created: float
    os_release: str | None
    kernel_version: str | None
    used_by: list[str]
    firmware: str = Field(default="bios", description="what a VM made from it boots with")
    arch: Literal["x86_64", "i386", "aarch64"] = Field(
        default="x86_64", description="the guest's architecture, as QEMU names it"
    )


class AccelInfo(BaseModel):
    name: Literal["kvm", "tcg"]
    reason: str
    probe_ms: float | None


class ArchitectureInfo(BaseModel):
    name: Literal["x86_64", "i386", "aarch64"] = Field(description="QEMU's name for it")
    qemu_binary: str = Field(description="the system emulator that runs its guests")
    installed: bool = Field(description="whether that emulator is on the daemon's PATH")
    package: str = Field(description="the Debian package that provides the emulator")
    accel: AccelInfo = Field(description="the accelerator its guests get here, and why")
    binfmt: bool = Field(
        description="whether this host runs its programs (natively or through a registered "
        "qemu-user-static binfmt_misc handler), which building its images needs"
    )


class FirmwareInfo(BaseModel):
    """A ``--firmware`` choice: its files when installed, else the package that brings it."""

    name: str
    installed: bool
    code: str | None = Field(description="the firmware image (SeaBIOS's, or OVMF's code)")
    vars_template: str | None = Field(description="the variable store each VM copies (UEFI)")
    package: str = Field(description="the Debian package that provides it")


class HostInfo(BaseModel):
    hostname: str
    version: str = Field(description="bungalow's version, as the daemon runs it")
    cpus: int
    memory: int
    memory_available: int
    disk_total: int
    disk_free: int
    data_dir: str
    qemu: str
    accel: AccelInfo
    architectures: list[ArchitectureInfo] = Field(
        description="the guest architectures bungalow knows, and whether this host runs each"
    )
    vms: int
    vms_running: int
    allocated_cpus: int
    allocated_memory: int
    allocated_disk: int
    ratios: dict[str, float] = Field(description="allocation ratios: cpu, memory, disk")
    limit: dict[str, int] = Field(description="capacity x ratio: cpus, memory, disk")
    free: dict[str, int] = Field(description="what may still be allocated: cpus, memory, disk")
    firmwares: list[FirmwareInfo] = Field(
        default_factory=list, description="bios, uefi, uefi-secure: installed or not"
    )
    memory_use: HostMemoryInfo | None = Field(
        default=None, description="what the running VMs really take, share and give back"
    )


class Health(BaseModel):
    ok: bool
    pid: int
    version: str = Field(description="bungalow's version, as the client's")


class DeletedInfo(BaseModel):
    """A VM removed by snapshot-and-delete that can still be restored."""

    name: str
    deleted: float
    keep_until: float
    project: str | None
    owner: str | None
    labels: dict[str, str]
    state: str | None = Field(description="what it was when it was deleted")


class Finding(BaseModel):
    """One reason a VM looks forgotten, and what ``sprawl --apply`` would do about it."""

    vm: str
    kind: Literal[
        "lease-ending",
        "lease-expired",
        "idle",
        "orphan-project",
        "orphan-owner",
        "long-stopped",
        "pool",
    ]
    why: str
    since: float
    seconds: float
    action: str
    automatic: bool = Field(description="the reaper takes the action by itself")
    state: VmState
    owner: str | None
    project: str | None
    cost_per_hour: float | None = None
    cost_so_far: float | None = None
    memory_held: int | None = Field(
        default=None, description="host memory its QEMU holds now (PSS, bytes); None if none"
    )


class SprawlResult(BaseModel):
    vm: str
    action: str
    result: str | None = None
    error: str | None = None


class Event(BaseModel):
    id: int
    time: float
    vm: str | None
    kind: str
    message: str
    actor: str = Field(description="admin, project NAME, policy lease, sprawl --apply, daemon...")
    reason: str
    project: str | None
    subject: str | None = Field(default=None, description="what a non-VM event is about")


class ProjectQuotaView(BaseModel):
    vcpus: int | None
    memory: int | None
    disk: int | None
    vms: int | None


class ProjectUsage(BaseModel):
    vcpus: int
    memory: int
    disk: int
    vms: int


class ProjectInfo(BaseModel):
    name: str
    created: float
    quota: ProjectQuotaView
    idle: dict[str, Any]
    used: ProjectUsage
    token: str | None = Field(default=None, description="only when the project is made")


class CostRow(BaseModel):
    group: str = Field(description="a VM's name, an owner, a project or a label's value; - none")
    vm_id: str | None = Field(default=None, description="with by=vm")
    removed: bool = Field(default=False, description="with by=vm: the VM no longer exists")
    running_hours: float
    stopped_hours: float
    cpu: float
    memory: float
    disk: float = Field(description="disk and snapshots")
    total: float
    intervals: int = Field(description="usage records that make up this row")


class CostReport(BaseModel):
    by: str
    since: float
    until: float
    currency: str
    rates: dict[str, float] = Field(description="the rates in force now; history keeps its own")
    rows: list[CostRow]
    total: CostRow


class VmMetrics(BaseModel):
    """The latest sample of one running VM, with libvirt's domstats names."""

    vm: str
    noisy: bool
    noisy_for: list[str] = Field(description="cpu, disk")
    throttled: list[str] = Field(description="resources held to their share now")
    time: float | None
    stats: dict[str, float]
    rates: dict[str, float] = Field(description="per second since the sample before")


class MetricsHistory(BaseModel):
    vm: str
    history: list[dict[str, float]] = Field(description="one entry per sample, oldest first")


class NetworkInfo(BaseModel):
    name: str
    subnet: str
    gateway: str = Field(description="the host's address on the network, the VMs' router and DNS")
    bridge: str
    domain: str = Field(description="VMs' names resolve as NAME.DOMAIN, from VMs and the host")
    created: float
    vms: int = Field(description="how many VMs have a NIC on it")


class NetworkNic(BaseModel):
    vm: str
    index: int = Field(description="the NIC's place among the VM's private NICs, 0 first")
    mac: str
    address: str = Field(description="with the subnet's prefix, as 10.20.0.2/24")
    name: str = Field(description="the name it answers to, NAME.DOMAIN")


class NetworkLease(BaseModel):
    mac: str
    address: str
    hostname: str = Field(description="what the guest asked to be called; * none")
    expires: float | None = Field(description="None: infinite")


class NetworkDetail(NetworkInfo):
    nics: list[NetworkNic]
    leases: list[NetworkLease] = Field(description="what dnsmasq has handed out")
    dnsmasq_pid: int | None = Field(description="None: not running (it is started again at once)")


class DashboardInfo(BaseModel):
    """Where the web dashboard is, with a one-time login ticket in the URL."""

    url: str = Field(description="http(s)://HOST:PORT/login?ticket=...: works once, for 5 minutes")
    fingerprint: str | None = Field(
        description="SHA-256 of the listener's TLS certificate (AA:BB:...), null without TLS"
    )


class DashboardToken(BaseModel):
    token: str = Field(description="the admin's dashboard token (dashboard.token)")
