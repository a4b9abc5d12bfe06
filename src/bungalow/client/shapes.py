"""The shapes of bungalowd's answers, as the client hands them out.

Each TypedDict mirrors what the daemon sends: the pydantic response models of
the API's schemas (``VmInfo``, ``SnapshotInfo``, ``ImageInfo``, ``HostInfo``,
``CostReport``) key for key (tests/client/test_shapes.py holds them to it), and
the answers the daemon builds as plain dicts (projects, sprawl, events,
metrics, deleted VMs) as its code writes them. At run time they are plain
dicts; the types are for readers and for mypy.

Units, everywhere: sizes in bytes, moments in unix time (seconds since the
epoch, the daemon's clock), lengths of time in seconds, money in the
``currency`` of the daemon's price list.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# -- VMs -----------------------------------------------------------------------------------------


class VmCostInfo(TypedDict):
    so_far: float
    """All the VM has cost until now, its snapshots included."""
    per_hour: float
    """What it costs per hour as it is now."""
    currency: str


class NicInfo(TypedDict):
    """A VM's NIC on a private network: ``address`` as ADDRESS/PREFIX."""

    network: str
    address: str
    mac: str


class VncInfo(TypedDict):
    """A one-time VNC endpoint (``POST /v1/vms/NAME/vnc``): the first connection to
    ``host``:``port`` gets in with ``password``, within ``expires_in`` seconds."""

    url: str
    host: str
    port: int
    password: str
    expires_in: int


class DashboardInfo(TypedDict):
    """The web dashboard (``POST /v1/dashboard``): ``url`` logs the admin in once, within
    5 minutes; ``fingerprint`` is the SHA-256 of its TLS certificate (None without TLS)."""

    url: str
    fingerprint: str | None


class DashboardToken(TypedDict):
    token: str


class VmInfo(TypedDict):
    """One VM as ``GET /v1/vms/NAME`` shows it.

    ``state`` is created, starting, running, paused, stopping, stopped, failed or
    suspended; ``memory``, ``disk_size``, ``disk_used`` (space the disk really
    takes on the host) and ``snapshots_used`` are bytes; ``created``,
    ``started`` and ``expires_at`` unix times; ``expires_in`` and ``quiet_for``
    seconds. ``ports`` are ``[ADDR:]HOST:GUEST[/udp]`` forwards. ``operation`` is the
    lifecycle operation under way (create, start, stop, remove, snapshot, restore,
    suspend, wake) or None. ``networks`` are its NICs on private networks, first
    one first (empty: user-mode networking).
    suspend, wake) or None. ``cloud_init`` says whether it has a NoCloud seed;
    ``ssh_keys`` are the fingerprints (``SHA256:...``) of the keys its agent installs for root.
    ``media`` is the ISO image in its CD-ROM drive (by name), None when the tray is empty.
    ``firmware`` is ``bios``, ``uefi`` or ``uefi-secure``; ``tpm`` whether it has a TPM 2.0.
    """

    id: str
    name: str
    state: str
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
    sandbox: bool
    expires_at: float | None
    parent: str | None
    base_snapshot: str | None
    snapshots_used: int
    pooled: bool
    limits: dict[str, float | int]
    limits_pending: list[str]
    project: str | None
    owner: str | None
    labels: dict[str, str]
    created_by: str
    origin: str
    cost: VmCostInfo | None
    on_expiry: str | None
    expires_in: float | None
    lease_warned: bool
    idle: dict[str, float | str]
    quiet_for: float | None
    operation: str | None
    networks: list[NicInfo]
    cloud_init: bool
    ssh_keys: list[str]
    media: str | None
    firmware: str
    tpm: bool


class DeletedVm(TypedDict):
    """A VM removed by snapshot-and-delete that ``restore-deleted`` can bring back.

    ``deleted`` and ``keep_until`` are unix times; ``state`` is the one it had.
    """

    name: str
    deleted: float
    keep_until: float
    project: str | None
    owner: str | None
    labels: dict[str, str]
    state: str | None


# -- snapshots and images ------------------------------------------------------------------------


class SnapshotInfo(TypedDict):
    """A saved state of a VM: ``kind`` is full (memory, devices, disk) or disk (disk only).

    ``size`` is the bytes its files take on the host, ``memory`` and
    ``disk_size`` those of the VM it was taken of; ``used_by`` names the VMs
    and snapshots built on it.
    """

    id: str
    name: str
    vm: str
    kind: str
    purpose: str
    created: float
    image_id: str
    cpus: int
    memory: int
    disk_size: int
    accel: str
    qemu: str
    size: int
    base_snapshot: str | None
    used_by: list[str]


class ImageInfo(TypedDict):
    """An image VMs boot from: ``size`` is bytes on the host, ``virtual_size`` the disk's."""

    id: str
    name: str
    kind: str
    flavour: Literal["micro", "server"]
    size: int
    virtual_size: int
    created: float
    os_release: str | None
    kernel_version: str | None
    used_by: list[str]
    firmware: str
    arch: Literal["x86_64", "i386", "aarch64"]


class BuildProgress(TypedDict):
    type: Literal["progress"]
    stage: str
    fraction: float
    """From 0.0 to 1.0."""


class BuildDone(TypedDict):
    type: Literal["done"]
    image: ImageInfo


#: The events of ``POST /v1/images/build``: progress, then done (an error event raises).
BuildEvent = BuildProgress | BuildDone


class WaitProgress(TypedDict):
    type: Literal["progress"]
    state: str
    """``systemctl is-system-running``: initializing, starting... or unknown."""
    jobs: int
    """Jobs systemd still has queued."""
    elapsed: float
    """Seconds since the wait began."""


class WaitDone(TypedDict):
    type: Literal["done"]
    state: str
    """running, degraded, or no-systemd (an image without systemd: nothing to wait for)."""
    failed: list[str]
    """The failed units of a degraded system."""
    elapsed: float


#: The events of ``POST /v1/vms/NAME/wait``: progress as it changes, then done (an error
#: event, such as the timeout, raises).
WaitEvent = WaitProgress | WaitDone


# -- the host ------------------------------------------------------------------------------------


class AccelInfo(TypedDict):
    """The accelerator VMs get (kvm or tcg), why, and how long probing it took."""

    name: str
    reason: str
    probe_ms: float | None


class ArchitectureInfo(TypedDict):
    """One guest architecture (``x86_64``, ``i386``, ``aarch64``: QEMU's names): its emulator,
    whether it is installed (else ``package`` is the Debian package to install), the
    accelerator its guests get here and why, and whether building its images can run its
    programs (``binfmt``: natively or through qemu-user-static)."""

    name: str
    qemu_binary: str
    installed: bool
    package: str
    accel: AccelInfo
    binfmt: bool


class FirmwareInfo(TypedDict):
    """A ``--firmware`` choice: its code and vars template paths when ``installed``, else
    None; ``package`` is the Debian package that provides it."""

    name: str
    installed: bool
    code: str | None
    vars_template: str | None
    package: str


class HostInfo(TypedDict):
    """What the host has, what VMs hold of it, and the allocation ratios.

    ``ratios`` has keys cpu, memory, disk; ``limit`` (capacity times ratio) and
    ``free`` (what may still be allocated) have cpus, memory, disk. Memory and
    disk are bytes.
    """

    hostname: str
    version: str
    """bungalow's version as the daemon runs it (``bungalow --version`` is the client's)."""
    cpus: int
    memory: int
    memory_available: int
    disk_total: int
    disk_free: int
    data_dir: str
    qemu: str
    accel: AccelInfo
    architectures: list[ArchitectureInfo]
    vms: int
    vms_running: int
    allocated_cpus: int
    allocated_memory: int
    allocated_disk: int
    ratios: dict[str, float]
    limit: dict[str, int]
    free: dict[str, int]
    firmwares: list[FirmwareInfo]


# -- inside the guest ----------------------------------------------------------------------------


class OutputEvent(TypedDict):
    """Output of a running command, its bytes decoded from the wire's base64."""

    type: Literal["stdout", "stderr"]
    data: bytes


class ExitEvent(TypedDict):
    """How a command ended: ``exit_code`` is None when signal number ``signal`` killed it;
    ``timed_out`` says the agent killed it because its timeout passed."""

    type: Literal["exit"]
    exit_code: int | None
    signal: int | None
    timed_out: bool


#: The events of an exec: output as it comes, then one exit (an error event raises).
ExecEvent = OutputEvent | ExitEvent


class FileStatInfo(TypedDict):
    """A path in the guest: without ``exists`` the other keys are left out.

    ``type`` is file, dir, link or other; ``size`` bytes; ``mode`` the
    permission bits (``0o644``).
    """

    exists: bool
    type: NotRequired[str]
    size: NotRequired[int]
    mode: NotRequired[int]


# -- projects ------------------------------------------------------------------------------------


class ProjectQuota(TypedDict):
    """The most a project's VMs may hold (None: no limit): vCPUs and memory of its
    running VMs, disk bytes and the number of all its VMs."""

    vcpus: int | None
    memory: int | None
    disk: int | None
    vms: int | None


class ProjectUsage(TypedDict):
    """What a project's VMs hold now, counted as its quota counts."""

    vcpus: int
    memory: int
    disk: int
    vms: int


class ProjectInfo(TypedDict):
    """A project: its quotas, its default idle policy, and what its VMs use now."""

    name: str
    created: float
    quota: ProjectQuota
    idle: dict[str, float | str]
    used: ProjectUsage


class NetworkInfo(TypedDict):
    """A private network: its subnet, the host's address on it (``gateway``), its bridge,
    the DNS domain its VMs' names resolve under, and how many VMs have a NIC on it."""

    name: str
    subnet: str
    gateway: str
    bridge: str
    domain: str
    created: float
    vms: int


class NetworkNic(TypedDict):
    """A VM's NIC on a network; ``address`` carries the prefix (10.20.0.2/24)."""

    vm: str
    index: int
    mac: str
    address: str
    name: str


class NetworkLease(TypedDict):
    """A lease dnsmasq handed out; ``expires`` None is infinite."""

    mac: str
    address: str
    hostname: str
    expires: float | None


class NetworkDetail(NetworkInfo):
    """``network inspect``: the network, its VMs' NICs, dnsmasq's leases and PID."""

    nics: list[NetworkNic]
    leases: list[NetworkLease]
    dnsmasq_pid: int | None


class NewProject(ProjectInfo):
    """A project just made, with its API token (shown this once)."""

    token: str


# -- costs, sprawl, events, metrics --------------------------------------------------------------


class CostRow(TypedDict):
    """One group's cost: ``group`` is a VM's name, an owner, a project or a label's value.

    ``vm_id`` and ``removed`` are set when grouped by VM; ``disk`` includes
    snapshots; ``intervals`` counts the usage records behind the row.
    """

    group: str
    vm_id: str | None
    removed: bool
    running_hours: float
    stopped_hours: float
    cpu: float
    memory: float
    disk: float
    total: float
    intervals: int


class CostReport(TypedDict):
    """Accrued cost from ``since`` to ``until`` (unix times), grouped ``by`` vm, owner,
    project or ``label:KEY``; ``rates`` are the prices in force now."""

    by: str
    since: float
    until: float
    currency: str
    rates: dict[str, float]
    rows: list[CostRow]
    total: CostRow


class SprawlFinding(TypedDict):
    """One reason a VM looks forgotten, and what ``sprawl --apply`` would do about it.

    ``kind`` is lease-ending, lease-expired, idle, orphan-project, orphan-owner,
    long-stopped or pool (a warm-pool VM, until its pool lapses); ``since`` is a unix
    time and ``seconds`` how long it has been so; ``automatic`` says the reaper acts by
    itself. Costs are None without a price list.
    """

    vm: str
    kind: str
    why: str
    since: float
    seconds: float
    action: str
    automatic: bool
    state: str
    owner: str | None
    project: str | None
    cost_per_hour: float | None
    cost_so_far: float | None


class SprawlOutcome(TypedDict):
    """What ``sprawl --apply`` did to one VM: ``result`` when it worked, else ``error``."""

    vm: str
    action: str
    result: NotRequired[str]
    error: NotRequired[str]


class AuditEvent(TypedDict):
    """One entry of the audit log: who (``actor``) did what (``kind``) to ``vm``, why, when."""

    id: int
    time: float
    vm: str | None
    kind: str
    message: str
    actor: str
    reason: str
    project: str | None


class MetricRates(TypedDict, total=False):
    """Per-second rates between a VM's last two samples (empty before the second one).

    ``cpu`` and ``steal`` are shares of one host CPU; ``rss`` is bytes (not a
    rate); the block and net keys are bytes, requests, packets or nanoseconds a second.
    """

    cpu: float
    steal: float
    rss: float
    block_rd_bytes: float
    block_wr_bytes: float
    block_rd_reqs: float
    block_wr_reqs: float
    block_rd_times: float
    block_wr_times: float
    block_fl_reqs: float
    block_fl_times: float
    net_rx_bytes: float
    net_tx_bytes: float
    net_rx_pkts: float
    net_tx_pkts: float


class VmMetrics(TypedDict):
    """A running VM's latest sample (``stats``, libvirt's domstats names) and rates.

    ``noisy_for`` names the resources (cpu, disk) it starves others of;
    ``throttled`` those the daemon's noisy policy holds it back on.
    """

    vm: str
    noisy: bool
    noisy_for: list[str]
    throttled: list[str]
    time: float | None
    stats: dict[str, float]
    rates: MetricRates
