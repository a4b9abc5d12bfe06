"""Subnet arithmetic: a network's subnet checked against the others and the host's own,
a free /24 picked when none is given (as Incus's ``ipv4.address=auto``), and addresses
handed out inside one.

The pure functions take what they judge as arguments; :func:`host_prefixes` reads
the host's routes and addresses (rtnetlink, through pyroute2).
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from bungalow.errors import ConflictError, UserError

#: The smallest network: a gateway, at least one VM, and the network and broadcast addresses.
LONGEST_PREFIX = 29
#: The largest: a /16 is 65534 addresses, more than one host's VMs will ever need.
SHORTEST_PREFIX = 16
#: Where a subnet is looked for when none is given, one /24 after another.
AUTO_POOL = IPv4Network("10.77.0.0/16")


def parse_subnet(text: str) -> IPv4Network:
    """``text`` as an IPv4 network (``10.20.0.0/24``); UserError with a sentence otherwise.

    Host bits set (``10.20.0.5/24``) and prefixes outside /16-/29 are refused.
    """
    try:
        subnet = IPv4Network(text, strict=True)
    except ValueError:
        try:
            IPv4Network(text, strict=False)
        except ValueError:
            raise UserError(
                f"The subnet {text!r} is not an IPv4 network in CIDR form; write one such as "
                "10.20.0.0/24."
            ) from None
        raise UserError(
            f"The subnet {text} has host bits set; write the network itself, such as "
            f"{IPv4Network(text, strict=False)}."
        ) from None
    if "/" not in text:
        raise UserError(f"The subnet {text} has no prefix length; write it as {text}/24.")
    if not SHORTEST_PREFIX <= subnet.prefixlen <= LONGEST_PREFIX:
        raise UserError(
            f"The subnet {subnet} has a /{subnet.prefixlen} prefix; give one from "
            f"/{SHORTEST_PREFIX} to /{LONGEST_PREFIX} (a /24 holds 253 VMs)."
        )
    if not subnet.is_private or subnet.is_loopback or subnet.is_link_local:
        raise UserError(
            f"The subnet {subnet} is not a private range; use one inside 10.0.0.0/8, "
            "172.16.0.0/12 or 192.168.0.0/16."
        )
    return subnet


def gateway_of(subnet: IPv4Network) -> IPv4Interface:
    """The host's address on the network: the subnet's first address (``.1``)."""
    return IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")


def check_free(
    subnet: IPv4Network, networks: dict[str, IPv4Network], host: Iterable[IPv4Network]
) -> None:
    """ConflictError with a sentence when ``subnet`` overlaps another network of ours
    (``networks``: name -> subnet) or any of the host's routes and addresses (``host``).

    A default route (``0.0.0.0/0``) is not a collision: it is where everything else goes.
    """
    for name, other in sorted(networks.items()):
        if subnet.overlaps(other):
            raise ConflictError(
                f"The subnet {subnet} overlaps network {name}'s {other}; choose another "
                "subnet, or leave --subnet out to have a free one picked."
            )
    for prefix in host:
        if prefix.prefixlen and subnet.overlaps(prefix):
            raise ConflictError(
                f"The subnet {subnet} collides with the host's route or address {prefix}; "
                "choose a subnet the host does not use (`ip route` shows them)."
            )


def pick_free(
    taken: Iterable[IPv4Network], pool: IPv4Network = AUTO_POOL, prefix: int = 24
) -> IPv4Network:
    """The first /``prefix`` of ``pool`` that overlaps nothing in ``taken``; ConflictError
    when the pool is full."""
    used = [net for net in taken if net.prefixlen]
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise ConflictError(
        f"Every /{prefix} of {pool} is used by a network or the host; give one with --subnet."
    )


def check_address(address: IPv4Address, subnet: IPv4Network, taken: dict[IPv4Address, str]) -> None:
    """UserError or ConflictError with a sentence when ``address`` cannot be a VM's on
    ``subnet``: outside it, its network or broadcast address, the gateway, or ``taken``
    (address -> the VM holding it)."""
    if address not in subnet:
        raise UserError(f"The address {address} is not in the network's subnet {subnet}.")
    if address in (subnet.network_address, subnet.broadcast_address):
        raise UserError(
            f"The address {address} is {subnet}'s network or broadcast address; "
            "choose one between them."
        )
    if address == gateway_of(subnet).ip:
        raise UserError(f"The address {address} is the network's gateway (the host's own).")
    if address in taken:
        raise ConflictError(
            f"The address {address} is taken by VM {taken[address]}; choose another or "
            "leave --ip out to get a free one."
        )


def next_address(subnet: IPv4Network, taken: Iterable[IPv4Address]) -> IPv4Interface:
    """The lowest free address of ``subnet`` after the gateway; ConflictError when full."""
    used = set(taken) | {gateway_of(subnet).ip}
    for host in subnet.hosts():
        if host not in used:
            return IPv4Interface(f"{host}/{subnet.prefixlen}")
    raise ConflictError(
        f"Every address of {subnet} is taken; remove a VM from the network or make a larger one."
    )


def host_prefixes(ignore: Iterable[str] = ()) -> list[IPv4Network]:
    """Every IPv4 route of the main routing table and every address of the host, as networks,
    leaving out those on the interfaces named in ``ignore`` (our own bridges).

    Read through rtnetlink (pyroute2); blocks for a few milliseconds.
    """
    from pyroute2 import IPRoute

    skip = set(ignore)
    found: set[IPv4Network] = set()
    with IPRoute() as ip:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
        for route in ip.get_routes(family=2, table=254):
            if names.get(route.get_attr("RTA_OIF")) in skip:
                continue
            dst = route.get_attr("RTA_DST") or "0.0.0.0"
            found.add(IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
        for addr in ip.get_addr(family=2):
            if names.get(addr["index"]) in skip:
                continue
            found.add(
                IPv4Network(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False)
            )
    return sorted(found)
