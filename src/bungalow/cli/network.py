"""``bungalow network``: private networks (a bridge, DHCP, DNS and NAT out each)."""

from __future__ import annotations

from typing import Annotated

import typer

from bungalow.cli.common import AsJson, client, each
from bungalow.cli.output import age, print_json, say, table

app = typer.Typer(
    no_args_is_help=True, help="Private networks: VMs reach each other by name on one."
)

NetworkName = Annotated[str, typer.Argument(help="Network name (also its DNS domain).")]


@app.command("create")
def create(
    name: NetworkName,
    subnet: Annotated[
        str | None,
        typer.Option("--subnet", help="CIDR, /16 to /29 (default: a free /24 of 10.77.0.0/16)."),
    ] = None,
) -> None:
    """Make a network: a bridge, dnsmasq for DHCP and DNS, and NAT out (needs root)."""
    network = client().create_network(name, subnet)
    say(
        f"network {network['name']} is {network['subnet']} on {network['bridge']}; "
        f"VMs on it resolve as NAME.{network['domain']}"
    )


@app.command("ls")
def ls(as_json: AsJson = False) -> None:
    """Networks with their subnets, domains and how many VMs each has."""
    networks = client().list_networks()
    if as_json:
        print_json(networks)
        return
    rows = [
        [
            n["name"],
            n["subnet"],
            n["gateway"],
            n["domain"],
            n["bridge"],
            n["vms"],
            age(n["created"]),
        ]
        for n in networks
    ]
    table(["NETWORK", "SUBNET", "GATEWAY", "DOMAIN", "BRIDGE", "VMS", "CREATED"], rows)


@app.command("inspect")
def inspect(name: NetworkName, as_json: AsJson = False) -> None:
    """A network's VMs with their MACs, addresses and names, and dnsmasq's leases."""
    detail = client().inspect_network(name)
    if as_json:
        print_json(detail)
        return
    say(
        f"network {detail['name']}: {detail['subnet']}, gateway {detail['gateway']} on "
        f"{detail['bridge']}, domain {detail['domain']}, dnsmasq "
        f"{detail['dnsmasq_pid'] or 'not running'}"
    )
    leased = {lease["mac"]: lease for lease in detail["leases"]}
    rows = [
        [nic["vm"], nic["name"], nic["address"], nic["mac"], "yes" if nic["mac"] in leased else "-"]
        for nic in detail["nics"]
    ]
    table(["VM", "NAME", "ADDRESS", "MAC", "LEASED"], rows)


@app.command("rm")
def rm(names: Annotated[list[str], typer.Argument(help="Network names.")]) -> None:
    """Remove networks no VM is on: bridge, dnsmasq, rules and names go with them."""

    def remove(name: str) -> str:
        client().remove_network(name)
        return f"network {name} is removed"

    each(names, remove)


VmName = Annotated[str, typer.Argument(help="VM name.")]


@app.command("connect")
def connect(
    vm: VmName,
    name: NetworkName,
    ip: Annotated[
        str | None, typer.Option("--ip", help="Fixed IPv4 address (default: the next free).")
    ] = None,
) -> None:
    """Give a VM a NIC on a network: at once on a running micro VM that booted on a
    network, else (stopped) from its next start."""
    info = client().connect_network(vm, name, ip)
    nic = next(n for n in info["networks"] if n["network"] == name)
    when = "now" if info["state"] == "running" else "from its next start"
    say(f"{vm} is on {name} as {nic['address']} ({nic['mac']}) {when}")


@app.command("disconnect")
def disconnect(vm: VmName, name: NetworkName) -> None:
    """Remove a VM's NIC on a network (a running VM's only if it was connected live)."""
    client().disconnect_network(vm, name)
    say(f"{vm} is off {name}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="network")
