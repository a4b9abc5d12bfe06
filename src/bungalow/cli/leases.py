"""Leases and idle policies: ``lease set|renew|drop|ls`` and ``idle``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from bungalow.cli.common import AsJson, VmName, client
from bungalow.cli.output import print_json, say, table

if TYPE_CHECKING:
    from bungalow.client.shapes import VmInfo

app = typer.Typer(no_args_is_help=True, help="A VM's lease: when it ends and what happens then.")

Duration = Annotated[str, typer.Argument(help="How long from now: 30m, 2h, 1d, 1w...")]
OnExpiry = Annotated[
    str | None,
    typer.Option("--on-expiry", help="stop, suspend, snapshot-and-delete or delete."),
]


def span(seconds: float) -> str:
    """``2h5m``, ``8m``, ``40s``: a length of time in its two largest units."""
    seconds = max(0, int(seconds))
    parts = [(seconds // size, unit) for unit, size in (("d", 86400), ("h", 3600), ("m", 60))]
    parts = [
        (value % limit if i else value, unit)
        for i, ((value, unit), limit) in enumerate(zip(parts, (0, 24, 60), strict=True))
    ]
    shown = [f"{value}{unit}" for value, unit in parts if value]
    return "".join(shown[:2]) or f"{seconds}s"


def _left(seconds: float) -> str:
    return "now" if seconds <= 0 else f"in {span(seconds)}"


def lease_text(vm: VmInfo) -> str:
    """``in 8m !`` once the lease-warning is out, ``in 2h`` before, ``-`` without a lease."""
    left = vm.get("expires_in")
    if left is None:
        return "-"
    return _left(left) + (" !" if vm.get("lease_warned") else "")


@app.command("set")
def set_lease(name: VmName, duration: Duration, on_expiry: OnExpiry = None) -> None:
    """Give the VM a lease ending DURATION from now (replacing any it had)."""
    vm = client().lease_vm(name, duration, on_expiry)
    say(f"{name}'s lease ends {lease_text(vm)}, then {vm['on_expiry']}")


@app.command("renew")
def renew(name: VmName, duration: Duration) -> None:
    """Postpone the end of the VM's lease to DURATION from now."""
    vm = client().renew_lease(name, duration)
    say(f"{name}'s lease ends {lease_text(vm)}, then {vm['on_expiry']}")


@app.command("drop")
def drop(name: VmName) -> None:
    """Take the VM's lease away: it runs until someone removes it."""
    client().lease_vm(name, None)
    say(f"{name} has no lease now")


@app.command("ls")
def ls(as_json: AsJson = False) -> None:
    """VMs with a lease, soonest end first."""
    leased = [vm for vm in client().list_vms() if vm.get("expires_in") is not None]
    leased.sort(key=lambda vm: vm["expires_in"] or 0.0)
    if as_json:
        print_json(leased)
        return
    rows = ([vm["name"], vm["state"], lease_text(vm), vm["on_expiry"], vm.get("owner") or "-"]
            for vm in leased)  # fmt: skip
    table(["NAME", "STATE", "ENDS", "THEN", "OWNER"], rows)


def idle(
    name: VmName,
    after: Annotated[str | None, typer.Option("--after", help="Idle this long: 30m, 2h.")] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", help="stop, suspend, snapshot-and-delete, delete or none."),
    ] = None,
    cpu: Annotated[str | None, typer.Option("--cpu", help="Busy above: 5% of a vCPU.")] = None,
    disk: Annotated[str | None, typer.Option("--disk", help="Busy above: 64K a second.")] = None,
    net: Annotated[str | None, typer.Option("--net", help="Busy above: 16K a second.")] = None,
) -> None:
    """Show or change the VM's own idle policy (the rest comes from its project or config)."""
    changes = {"after": after, "action": action, "cpu": cpu, "disk": disk, "net": net}
    changes = {key: value for key, value in changes.items() if value is not None}
    api = client()
    vm = api.set_idle(name, **changes) if changes else api.get_vm(name)
    own = ", ".join(f"{key}={value}" for key, value in sorted(vm["idle"].items())) or "defaults"
    quiet = vm.get("quiet_for")
    say(f"{name}: {own}" + ("" if quiet is None else f"; quiet for {span(quiet)}"))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="lease")
    root.command()(idle)
