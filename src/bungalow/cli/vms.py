"""VM lifecycle commands: launch, run, ls, inspect, start, stop, rm, logs, wait."""

from __future__ import annotations

import ipaddress
import os
import pwd
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from bungalow.cli.common import AsJson, VmName, VmNames, client, each, given
from bungalow.cli.complete import image_names
from bungalow.cli.cost import money
from bungalow.cli.guest import CommandTimeout, ExecCommand, own_failures, stream_exec
from bungalow.cli.leases import OnExpiry, lease_text
from bungalow.cli.limits import (
    CpuCap,
    CpuWeight,
    DiskBw,
    DiskBwBurst,
    DiskIops,
    DiskIopsBurst,
    MemoryLimit,
    MemoryMin,
    NetBw,
)
from bungalow.cli.media import medium_ref
from bungalow.cli.output import age, error, print_json, progress, say, size, table, waiting
from bungalow.cli.params import Count, Duration
from bungalow.cli.provisioning import read_cloud_init, read_ssh_keys
from bungalow.client.sandbox_base import DEFAULT_IMAGE
from bungalow.errors import BungalowError, NotFoundError, UserError
from bungalow.names import parse_labels

if TYPE_CHECKING:
    from bungalow.client.shapes import VmInfo, WaitDone

Cpus = Annotated[int, typer.Option("--cpus", "-c", help="Virtual CPUs.")]
Memory = Annotated[str, typer.Option("--memory", "-m", help="Memory, e.g. 512M or 2G.")]
Disk = Annotated[str | None, typer.Option("--disk", "-d", help="Disk size, e.g. 8G (default: 4G).")]
Ports = Annotated[
    list[str] | None,
    typer.Option("--publish", "-p", help="Forward [ADDR:]HOST:GUEST[/udp] to the guest."),
]
Networks = Annotated[
    list[str] | None,
    typer.Option(
        "--network",
        help="Put the VM on this private network (NAME, or NAME:ADDRESS for a fixed "
        "address); repeat for more. Without it: user-mode networking.",
    ),
]
Ip = Annotated[str | None, typer.Option("--ip", help="Fixed IPv4 address on the first --network.")]
Accel = Annotated[str, typer.Option("--accel", help="auto, kvm or tcg.")]
Profile = Annotated[str | None, typer.Option("--profile", help="micro or pc.")]
Firmware = Annotated[
    str | None,
    typer.Option(
        "--firmware",
        click_type=click.Choice(["bios", "uefi", "uefi-secure"]),
        help="pc firmware: bios (SeaBIOS), uefi (OVMF) or uefi-secure (Secure Boot, "
        "Microsoft keys); default: the image's.",
    ),
]
Tpm = Annotated[bool, typer.Option("--tpm", help="A TPM 2.0 (swtpm); pc profile.")]


def invoking_user() -> str | None:
    """The login of whoever runs the CLI, through sudo too; None if it cannot be told."""
    name = os.environ.get("SUDO_USER") or os.environ.get("USER") or os.environ.get("LOGNAME")
    if not name:
        try:
            name = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            return None
    return name


def ensure_image(name: str) -> None:
    """Build a recipe image the first time it is asked for, with a progress bar."""
    api = client()
    try:
        api.get_image(name)
        return
    except NotFoundError:
        if name not in api.recipes():
            raise
    progress(api.build_image(name), f"building {name}")


def _launch(name: str, image: str | None, cpus: int, memory: str, disk: str | None,
            ports: list[str], accel: str, profile: str | None,
            extra: dict[str, Any] | None = None) -> VmInfo:  # fmt: skip
    if not (extra or {}).get("iso"):
        image = image or DEFAULT_IMAGE
        ensure_image(image)
    spec: dict[str, Any] = {
        "name": name, "cpus": cpus, "memory": memory,
        "ports": ports, "accel": accel, "profile": profile, **(extra or {}),
    }  # fmt: skip
    if image is not None:  # with --iso, bungalowd refuses it (an installer VM boots the ISO)
        spec["image"] = image
    if disk is not None:
        spec["disk"] = disk
    return client().create_vm(**spec)


def launch(
    name: Annotated[str, typer.Argument(help="Name of the new VM.")],
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            "-i",
            help="Image to boot [default: debian-12].",
            autocompletion=image_names,
        ),
    ] = None,
    iso: Annotated[
        str | None,
        typer.Option(
            "--iso",
            help="Install from this ISO (a file, imported first, or an ISO image) onto a "
            "blank disk of --disk's size; the VM boots its disk first, then the CD.",
        ),
    ] = None,
    cpus: Cpus = 1,
    memory: Memory = "512M",
    disk: Disk = None,
    ports: Ports = None,
    networks: Networks = None,
    ip: Ip = None,
    accel: Accel = "auto",
    profile: Profile = None,
    firmware: Firmware = None,
    tpm: Tpm = False,
    cpu_weight: CpuWeight = None,
    cpu_cap: CpuCap = None,
    memory_limit: MemoryLimit = None,
    disk_iops: DiskIops = None,
    disk_bw: DiskBw = None,
    disk_iops_burst: DiskIopsBurst = None,
    disk_bw_burst: DiskBwBurst = None,
    net_bw: NetBw = None,
    memory_min: MemoryMin = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Project to charge (admin; a token implies it).")
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option("--owner", help="Person or team the VM is for (default: you)."),
    ] = None,
    labels: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="KEY=VALUE label; repeat for more."),
    ] = None,
    ttl: Annotated[str | None, typer.Option("--ttl", help="Lease: 2h, 1d... from now.")] = None,
    on_expiry: OnExpiry = None,
    idle_after: Annotated[
        str | None, typer.Option("--idle-after", help="Idle (no CPU, disk, net, exec) this long.")
    ] = None,
    on_idle: Annotated[
        str | None,
        typer.Option("--on-idle", help="stop, suspend, snapshot-and-delete, delete or none."),
    ] = None,
    cloud_init: Annotated[
        Path | None,
        typer.Option("--cloud-init", help="cloud-init user-data file (#cloud-config YAML...)."),
    ] = None,
    ssh_keys: Annotated[
        list[Path] | None,
        typer.Option("--ssh-key", help="SSH public key file for root; repeat for more."),
    ] = None,
    wait: Annotated[
        str | None,
        typer.Option(
            "--wait",
            click_type=click.Choice(["services"]),
            help="services: also wait until systemd says the system is running (a server "
            "image; at once for a micro one), showing its progress.",
        ),
    ] = None,
    wait_timeout: Annotated[
        float,
        typer.Option("--timeout", click_type=Duration(), help="How long --wait waits: 10m, 30m..."),
    ] = 600.0,
) -> None:
    """Create a VM from an image and boot it.

    It is running once its agent answers (exec, cp and shell work); with a server
    image, systemd may still be starting services then: --wait services waits for them.
    """
    body = given(
        cpu_weight=cpu_weight, cpu_cap=cpu_cap, memory_limit=memory_limit, disk_iops=disk_iops,
        disk_bw=disk_bw, disk_iops_burst=disk_iops_burst, disk_bw_burst=disk_bw_burst,
        net_bw=net_bw, project=project, ttl=ttl, on_expiry=on_expiry, idle_after=idle_after,
        on_idle=on_idle, memory_min=memory_min,
    )  # fmt: skip
    body["owner"] = owner or invoking_user()
    if firmware is not None:
        body["firmware"] = firmware
    if tpm:
        body["tpm"] = True
    body["labels"] = parse_labels(labels or [])
    if networks or ip:
        body["networks"] = network_choices(networks or [], ip)
    if cloud_init is not None:
        body["user_data"] = read_cloud_init(cloud_init)
    if ssh_keys:
        body["ssh_keys"] = read_ssh_keys(ssh_keys)
    if iso is not None:
        body["iso"] = medium_ref(iso)
    vm = _launch(name, image, cpus, memory, disk, ports or [], accel, profile, body)
    say(f"{vm['name']} is running ({vm['image']}, {vm['cpus']} CPU, {size(vm['memory'])})")
    if wait is not None:
        say(services_sentence(name, waiting(client().wait_vm(name, wait, wait_timeout), name)))


WaitFor = Annotated[
    str,
    typer.Option(
        "--for",
        click_type=click.Choice(["services"]),
        help="services: systemd says the system is running (or degraded).",
    ),
]
WaitTimeout = Annotated[
    float,
    typer.Option("--timeout", click_type=Duration(), help="Give up after 10m, 30m..."),
]


def wait(name: VmName, until: WaitFor = "services", timeout: WaitTimeout = 600.0) -> None:
    """Wait until a running VM's services have started, showing systemd's progress.

    Ends at once for a micro image (no systemd); exits 1 with a sentence after --timeout.
    """
    say(services_sentence(name, waiting(client().wait_vm(name, until, timeout), name)))


def services_sentence(name: str, done: WaitDone | None) -> str:
    """What ``--wait services`` found, in a sentence."""
    if done is None or done["state"] == "no-systemd":
        return f"{name} has no systemd (a micro image): there are no services to wait for"
    took = f"after {done['elapsed']:.0f}s"
    if done["state"] == "degraded":
        failed = ", ".join(done["failed"]) or "see `systemctl --failed`"
        return f"{name}'s services have started {took}, but some failed: {failed}"
    return f"{name}'s services have started ({done['state']}) {took}"


def network_choices(networks: list[str], ip: str | None) -> list[str]:
    """``--network`` words as the API takes them, ``--ip`` joined to the first."""
    if ip is None:
        return networks
    if not networks:
        raise UserError("--ip gives the address on a network; add --network NAME as well.")
    if ":" in networks[0]:
        raise UserError(
            f"The network {networks[0]} already names its address; give it once, "
            "either as --network NAME:ADDRESS or with --ip."
        )
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        raise UserError(
            f"--ip {ip} is not an IPv4 address; give one inside the network's subnet, such as "
            "10.20.0.5."
        ) from None
    return [f"{networks[0]}:{ip}", *networks[1:]]


def run(
    image: Annotated[str, typer.Argument(help="Image to boot.", autocompletion=image_names)],
    command: Annotated[list[str], typer.Argument(help="Command to run, after --.")],
    remove: Annotated[bool, typer.Option("--rm", help="Delete the VM afterwards.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Name of the VM.")] = None,
    cpus: Cpus = 1,
    memory: Memory = "512M",
    disk: Disk = None,
    ports: Ports = None,
    accel: Accel = "auto",
    timeout: CommandTimeout = None,
) -> None:
    """Boot a new VM, run one command in it, pass its exit status on.

    Exit status, as `docker run` gives it: the command's own; 124 when --timeout
    ended it; 128+N when signal N did; 125 when bungalow could not run it (bad
    usage, no such image, the VM did not boot, bungalowd unreachable).
    """
    vm_name = name or f"run-{secrets.token_hex(3)}"
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    with own_failures():
        _launch(vm_name, image, cpus, memory, disk, ports or [], accel, None,
                {"owner": invoking_user()})  # fmt: skip
    try:
        with own_failures():
            code = stream_exec(vm_name, command, **options)
    finally:
        _after_run(vm_name, remove)
    raise typer.Exit(code)


def _after_run(name: str, remove: bool) -> None:
    """Delete the VM of a ``run --rm``, or say it keeps running; a failure is said, not raised."""
    if not remove:
        print(f"bungalow: the VM {name} keeps running.", file=sys.stderr)
        return
    try:
        client().remove_vm(name)
    except BungalowError as exc:
        error(f"{exc.message} The VM {name} is left; remove it with `bungalow rm {name}`.")


def ls(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Names only.")] = False,
    project: Annotated[
        str | None, typer.Option("--project", help="Only this project's VMs.")
    ] = None,
    labels: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Only VMs labelled KEY=VALUE (or KEY); repeat: all."),
    ] = None,
    states: Annotated[
        list[str] | None,
        typer.Option(
            "--state", "-s", help="Only VMs in this state (running, stopped...); repeat: any."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List VMs (all, or those every filter given lets through)."""
    vms = client().list_vms(project, states or [], labels or [])
    if as_json:
        print_json(vms)
        return
    if quiet:
        for vm in vms:
            say(vm["name"])
        return
    table(
        ["NAME", "STATE", "IMAGE", "CPUS", "MEMORY", "DISK", "PORTS", "AGE", "EXPIRES", "COST"],
        (
            [
                vm["name"], vm["state"], vm["image"], vm["cpus"], size(vm["memory"]),
                _disk(vm), ",".join(vm["ports"]) or "-", age(vm["created"]),
                _expires(vm), _cost(vm),
            ]
            for vm in vms
        ),
    )  # fmt: skip
    for vm in vms:  # paused by no one's command: say why, and what to do
        if vm["state"] == "paused" and vm.get("error"):
            say(f"{vm['name']} is paused: {vm['error']}.")


def _expires(vm: VmInfo) -> str:
    """When the VM's lease ends; a warm-pool VM is marked, with when its pool lapses if it does."""
    text = lease_text(vm)
    if not vm.get("pooled"):
        return text
    return "pool" if text == "-" else f"{text} (pool)"


def _disk(vm: VmInfo) -> str:
    """Space really used on the host out of the disk's size, plus snapshots if any."""
    text = f"{size(vm['disk_used'])}/{size(vm['disk_size'])}"
    if vm.get("snapshots_used"):
        text += f" +{size(vm['snapshots_used'])} snap"
    return text


def _cost(vm: VmInfo) -> str:
    """What the VM has cost so far (snapshots included)."""
    cost = vm.get("cost")
    return "-" if not cost else money(cost["so_far"], cost["currency"])


def inspect(
    name: VmName,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, as always (for scripts).")] = False,
) -> None:
    """Everything the daemon knows about a VM, with its last 10 events, as JSON."""
    api = client()
    print_json({**api.get_vm(name), "events": api.events_log(name)[-10:]})


def start(names: VmNames) -> None:
    """Boot stopped (or resume suspended) VMs."""
    each(names, lambda name: f"{client().start_vm(name)['name']} is running")


def stop(
    names: VmNames,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            "-t",
            click_type=Duration(zero=True, most=3600),
            help="Wait this long (30s, 2m; at most 1h) for a clean shutdown before forcing it off.",
        ),
    ] = 30.0,
) -> None:
    """Shut VMs down cleanly (forced after --timeout); their disks are kept."""
    each(names, lambda name: f"{client().stop_vm(name, timeout)['name']} is stopped")


#: States in which a VM's guest runs (or is frozen mid-run): `rm` asks before ending it.
_LIVE = ("running", "paused", "starting")


def rm(
    names: VmNames,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            "-f",
            help="Remove running VMs without asking: their QEMU is ended first, as if "
            "the power were cut (docker rm -f).",
        ),
    ] = False,
) -> None:
    """Delete VMs with their disks and snapshots. A running one is asked about first on a
    terminal (not in a script); -f never asks."""
    api = client()
    ask = not force and sys.stdin.isatty()

    def remove(name: str) -> str:
        if ask and (state := api.get_vm(name)["state"]) in _LIVE:
            prompt = f"{name} is {state}; end it and delete it with its disk?"
            if not typer.confirm(prompt, default=False):
                return f"{name} is kept"
        api.remove_vm(name)
        return f"{name} is removed"

    each(names, remove)


def logs(
    name: VmName,
    tail: Annotated[
        int, typer.Option("--tail", "-n", click_type=Count(0), help="Only the last N lines.")
    ] = 0,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Then print its output as it comes, until it stops."),
    ] = False,
    firmware: Annotated[
        bool,
        typer.Option(
            "--firmware", help="The firmware's debug log instead (a pc VM: SeaBIOS's boot lines)."
        ),
    ] = False,
) -> None:
    """The VM's serial console output (kernel messages, boot, login prompt)."""
    api = client()
    if not follow:
        sys.stdout.write(api.logs(name, tail, firmware))
        sys.stdout.flush()
        return
    out = sys.stdout.buffer
    for chunk in api.follow_logs(name, tail, firmware):
        out.write(chunk)
        out.flush()


def register(app: typer.Typer) -> None:
    for command in (launch, run, ls, inspect, start, stop, rm, logs, wait):
        app.command(cls=ExecCommand if command is run else None)(command)
