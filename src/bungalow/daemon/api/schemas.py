"""The shapes of the REST API, as pydantic models (they make the OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LimitsUpdate(BaseModel):
    """Each one optional; 0 or "none" lifts a limit."""

    cpu_weight: int | None = Field(default=None, description="relative CPU share, 100 normal")
    cpu_cap: float | str | None = Field(default=None, description="CPUs at most, e.g. 0.5")
    memory_limit: str | int | None = Field(default=None, description="whole QEMU process")
    disk_iops: int | str | None = None
    disk_bw: str | int | None = Field(default=None, description="bytes per second, e.g. 100M")
    disk_iops_burst: int | str | None = None
    disk_bw_burst: str | int | None = None
    net_bw: str | int | None = Field(
        default=None,
        description="bytes per second each way, e.g. 50M; from the next start on "
        "a VM started without one",
    )


class VmCreate(LimitsUpdate):
    name: str
    project: str | None = Field(default=None, description="admin only; a token implies its own")
    image: str = "debian-12"
    cpus: int = 1
    memory: str | int = "512M"
    disk: str | int | None = None
    ports: list[str] = Field(default_factory=list)
    accel: str = "auto"
    profile: str | None = None
    owner: str | None = Field(default=None, description="person or team the VM is for")
    labels: dict[str, str] = Field(default_factory=dict)
    ttl: str | float | None = Field(default=None, description="lease: 2h, 30m... from now")
    on_expiry: str | None = Field(default=None, description="stop, suspend, ..., delete")
    idle_after: str | float | None = Field(default=None, description="idle this long: 30m")
    on_idle: str | None = Field(default=None, description="stop, suspend, ..., delete, none")


class VmCostInfo(BaseModel):
    so_far: float = Field(description="all the VM has cost until now, its snapshots included")
    per_hour: float = Field(description="what it costs per hour as it is now")
    currency: str


class VmInfo(BaseModel):
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


class SnapshotCreate(BaseModel):
    name: str


class SnapshotInfo(BaseModel):
    id: str
    name: str
    vm: str
    kind: str = Field(description="full (memory, devices, disk) or disk (disk only)")
    purpose: str
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


class CloneCreate(BaseModel):
    name: str
    snapshot: str | None = None


class ForkRequest(BaseModel):
    count: int = 1


class SandboxCreate(BaseModel):
    image: str = "debian-12"
    cpus: int = 1
    memory: str | int = "512M"
    disk: str | int | None = None
    timeout: str | float | None = Field(
        default=None, description="90s, 10m, 1h...; null for none; absent for the daemon's default"
    )
    name: str | None = None
    warm: bool = True
    owner: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class StopRequest(BaseModel):
    timeout: float = 30.0


class ExecRequest(BaseModel):
    argv: list[str] | None = None
    command: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    user: str | None = None
    timeout: float | None = None
    stdin: str | None = Field(default=None, description="base64 bytes fed to the command's stdin")
    tty: bool = False
    rows: int | None = None
    cols: int | None = None

    def resolved_argv(self) -> list[str]:
        if self.argv:
            return self.argv
        if self.command:
            return ["/bin/sh", "-c", self.command]
        return []


class ImageBuild(BaseModel):
    name: str = "debian-12"
    force: bool = False


class ImageImport(BaseModel):
    path: str
    name: str


class ImageInfo(BaseModel):
    id: str
    name: str
    kind: str
    size: int
    virtual_size: int
    created: float
    os_release: str | None
    kernel_version: str | None
    used_by: list[str]


class AccelInfo(BaseModel):
    name: str
    reason: str
    probe_ms: float | None


class HostInfo(BaseModel):
    hostname: str
    cpus: int
    memory: int
    memory_available: int
    disk_total: int
    disk_free: int
    data_dir: str
    qemu: str
    accel: AccelInfo
    vms: int
    vms_running: int
    allocated_cpus: int
    allocated_memory: int
    allocated_disk: int
    ratios: dict[str, float] = Field(description="allocation ratios: cpu, memory, disk")
    limit: dict[str, int] = Field(description="capacity x ratio: cpus, memory, disk")
    free: dict[str, int] = Field(description="what may still be allocated: cpus, memory, disk")
