"""Request bodies: each field a type of fields.py, shown in the schema as it is enforced.

A body is a :class:`Request`: an unknown field is refused (a misspelt ``cpu`` is
not silently ignored) and nothing is coerced (``true`` is not 1, ``"2"`` is not
2). Values users type (sizes such as ``512M``, durations such as ``2h``) are
accepted as text where a number is, and the services parse them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from bungalow.daemon.api.schemas.fields import (
    IPV4_PATTERN,
    Accel,
    Base64,
    Command,
    CpuCap,
    Cpus,
    CpuShare,
    CpuWeight,
    Disk,
    Duration,
    EnvName,
    ExecArg,
    ExecText,
    ExecTimeout,
    Firmware,
    ForkCount,
    HostPath,
    IdleAction,
    ImageName,
    ImageRef,
    Iops,
    Labels,
    MediumRef,
    Memory,
    NetworkName,
    NetworkText,
    OnExpiry,
    Owner,
    PortText,
    Profile,
    ProjectName,
    Quota,
    RateLimit,
    Size,
    SizeLimit,
    SnapshotName,
    SshKeys,
    StopTimeout,
    Subnet,
    TerminalSize,
    UserData,
    UserName,
    VmName,
    WaitTarget,
    text,
)
from bungalow.daemon.vms.nics import MAX_NICS
from bungalow.guest.protocol import MAX_EXEC_ARGS


class Request(BaseModel):
    """A request body: unknown fields are refused, and nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class LimitsUpdate(Request):
    """Each one optional; 0 or "none" lifts a limit."""

    cpu_weight: CpuWeight | None = Field(default=None, description="relative CPU share, 100 normal")
    cpu_cap: CpuCap | None = Field(default=None, description="CPUs at most, e.g. 0.5")
    memory_limit: SizeLimit | None = Field(default=None, description="whole QEMU process")
    disk_iops: Iops | None = None
    disk_bw: RateLimit | None = Field(default=None, description="bytes per second, e.g. 100M")
    disk_iops_burst: Iops | None = None
    disk_bw_burst: RateLimit | None = None
    net_bw: RateLimit | None = Field(
        default=None,
        description="bytes per second each way, e.g. 50M; from the next start on "
        "a VM started without one",
    )
    memory_min: SizeLimit | None = Field(
        default=None,
        description="balloon floor: the host may take memory back down to this under "
        "pressure; 0 or none: no floor, never ballooned",
    )


class VmCreate(LimitsUpdate):
    name: VmName
    project: ProjectName | None = Field(
        default=None, description="admin only; a token implies its own"
    )
    image: ImageRef | None = Field(
        default=None, description="the image to boot; none: debian-12 (not with `iso`)"
    )
    cpus: Cpus = 1
    memory: Memory = "512M"
    disk: Disk | None = None
    ports: Annotated[list[PortText], Field(max_length=64)] = Field(default_factory=list)
    networks: Annotated[list[NetworkText], Field(max_length=MAX_NICS)] = Field(
        default_factory=list,
        description="private networks, first one first; none: user-mode networking",
    )
    accel: Accel = "auto"
    profile: Profile | None = None
    firmware: Firmware | None = Field(
        default=None, description="bios, uefi or uefi-secure (pc); none: the image's"
    )
    tpm: bool = Field(default=False, description="a TPM 2.0 (swtpm; pc)")
    owner: Owner | None = Field(default=None, description="person or team the VM is for")
    labels: Labels = Field(default_factory=dict)
    ttl: Duration | None = Field(default=None, description="lease: 2h, 30m... from now")
    on_expiry: OnExpiry | None = Field(default=None, description="what the lease's end does")
    idle_after: Duration | None = Field(default=None, description="idle this long: 30m")
    on_idle: IdleAction | None = Field(default=None, description="what idleness does")
    user_data: UserData | None = Field(
        default=None,
        description="cloud-init user-data (#cloud-config YAML, a #! script or MIME multipart), "
        "at most 1 MiB; the VM gets a NoCloud seed",
    )
    ssh_keys: SshKeys = Field(
        default_factory=list, description="SSH public keys the agent installs for root"
    )
    iso: MediumRef | None = Field(
        default=None,
        description="an installer VM: this ISO (image name or id, or a file's absolute path, "
        "imported first) in its CD-ROM drive and a blank disk of `disk` bytes; give no "
        "`image` with it",
    )


class MediaInsert(Request):
    medium: MediumRef


class SshKeysAdd(Request):
    keys: Annotated[SshKeys, Field(min_length=1)]


class NicConnect(Request):
    network: NetworkName
    address: Annotated[str, text(IPV4_PATTERN, "an IPv4 address such as 10.20.0.5")] | None = Field(
        default=None, description="a fixed address; none: the next free one"
    )


class SnapshotCreate(Request):
    name: SnapshotName


class CloneCreate(Request):
    name: VmName
    snapshot: SnapshotName | None = None


class ForkRequest(Request):
    count: ForkCount = 1


class SandboxCreate(Request):
    image: ImageRef = "debian-12"
    cpus: Cpus = 1
    memory: Memory = "512M"
    disk: Disk | None = None
    timeout: Duration | None = Field(
        default=None, description="90s, 10m, 1h...; null for none; absent for the daemon's default"
    )
    name: VmName | None = None
    warm: bool = True
    network: NetworkName | None = Field(
        default=None, description="a private network to put it on (a clone with a NIC there)"
    )
    owner: Owner | None = None
    labels: Labels = Field(default_factory=dict)


class StopRequest(Request):
    timeout: StopTimeout = Field(
        default=30.0, description="seconds to wait for the guest before forcing it off"
    )


class WaitRequest(Request):
    until: WaitTarget = Field(
        default="services",
        description="services: the guest's systemd reports running or degraded (at once for "
        "an image without systemd)",
    )
    timeout: Duration = Field(default=600.0, description="give up after this long: 90s, 10m...")


class ExecRequest(Request):
    # Each argument takes at least its NUL of ARG_MAX: no more of them than that allows.
    argv: Annotated[list[ExecArg], Field(max_length=MAX_EXEC_ARGS // 2)] | None = None
    command: Command | None = None
    env: Annotated[dict[EnvName, ExecArg], Field(max_length=1024)] = Field(default_factory=dict)
    cwd: ExecText | None = None
    user: UserName | None = None
    timeout: ExecTimeout | None = None
    stdin: Base64 | None = Field(
        default=None, description="base64 bytes fed to the command's stdin"
    )
    tty: bool = False
    rows: TerminalSize | None = None
    cols: TerminalSize | None = None

    def resolved_argv(self) -> list[str]:
        if self.argv:
            return self.argv
        if self.command:
            return ["/bin/sh", "-c", self.command]
        return []


class ImageBuild(Request):
    name: ImageName = "debian-12"
    force: bool = False


class ImageImport(Request):
    path: HostPath = Field(description="a disk image file on the daemon's host")
    name: ImageName
    firmware: Firmware = Field(default="bios", description="what the disk boots with")
    vars: HostPath | None = Field(
        default=None, description="its UEFI variable store, a file on the daemon's host"
    )


class LeaseRequest(Request):
    timeout: Duration | None = Field(description="90s, 10m, 2h... from now; null drops it")
    on_expiry: OnExpiry | None = Field(default=None, description="what the lease's end does")


class LeaseRenewal(Request):
    duration: Duration = Field(description="the lease ends this long from now: 1h, 30m...")


class IdleUpdate(Request):
    after: Duration | None = Field(default=None, description="idle this long: 30m, 2h...")
    action: IdleAction | None = Field(default=None, description="what idleness does")
    cpu: CpuShare | None = Field(default=None, description="busy above this: 5% or 0.05")
    disk: Size | None = Field(default=None, description="bytes a second: 64K")
    net: Size | None = Field(default=None, description="bytes a second: 16K")


class ProjectQuota(Request):
    max_vcpus: Quota | None = None
    max_memory: Size | None = None
    max_disk: Size | None = None
    max_vms: Quota | None = None
    idle_after: Duration | None = None
    on_idle: IdleAction | None = None
    idle_cpu: CpuShare | None = None
    idle_disk: Size | None = Field(default=None, description="bytes a second: 64K")
    idle_net: Size | None = Field(default=None, description="bytes a second: 16K")


class ProjectCreate(ProjectQuota):
    name: ProjectName


class NetworkCreate(Request):
    name: NetworkName
    subnet: Subnet | None = Field(
        default=None, description="CIDR, /16 to /29; a free /24 of 10.77.0.0/16 when left out"
    )
