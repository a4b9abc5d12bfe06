"""Keeping bungalow's traffic alive on a host where Docker runs, by Docker's own convention.

Docker sets the policy of iptables' ``FORWARD`` chain to drop and loads
``br_netfilter``. With iptables-nft that chain is a base chain of table ``ip
filter``; every base chain on a hook sees every packet, and a drop in any of them is
final, so bungalow's own table accepting a packet does not save it (moby/moby#39439,
canonical/lxd#3387). libvirt cannot help this either and Incus documents the fix for
its users: rules in ``DOCKER-USER``, the chain Docker jumps to first from
``FORWARD`` and keeps for its users' rules ("Docker and iptables" in Docker's
documentation). bungalow adds two there itself, accepting whatever comes from or goes
to one of its bridges; they only end Docker's judgement, and bungalow's own table
still judges every such packet (isolation between networks, inbound only as answers
or published ports).

The rules carry the comment ``bungalow <table>``, by which they are found, replaced on
every change and removed with the last network. A ``DOCKER-USER`` chain is looked for
in every ``ip`` table, since that is where iptables-nft keeps it.
"""

from __future__ import annotations

import json
import subprocess

from bungalow.host.net.nftables import nft

CHAIN = "DOCKER-USER"


def _chains() -> list[str]:
    """The ``ip`` tables holding a chain named DOCKER-USER."""
    result = subprocess.run(
        ["nft", "-j", "list", "chains", "ip"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0 or not result.stdout.strip():
        return []
    return sorted(
        item["chain"]["table"]
        for item in json.loads(result.stdout)["nftables"]
        if "chain" in item and item["chain"]["name"] == CHAIN
    )


def _our_handles(table: str, comment: str) -> list[int]:
    result = subprocess.run(
        ["nft", "-j", "-a", "list", "chain", "ip", table, CHAIN],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return []
    return [
        item["rule"]["handle"]
        for item in json.loads(result.stdout)["nftables"]
        if "rule" in item and item["rule"].get("comment") == comment
    ]


def allow(our_table: str, prefix: str | None) -> list[str]:
    """Make every DOCKER-USER chain hold exactly bungalow's two rules for bridges named
    ``prefix``... (none when ``prefix`` is None: the last network is gone); the tables
    changed."""
    comment = f"bungalow {our_table}"
    changed = []
    for table in _chains():
        script = "".join(
            f"delete rule ip {table} {CHAIN} handle {handle}\n"
            for handle in _our_handles(table, comment)
        )
        if prefix is not None:
            for side in ("iifname", "oifname"):
                script += (
                    f'insert rule ip {table} {CHAIN} {side} "{prefix}*" accept '
                    f'comment "{comment}"\n'
                )
        if script:
            nft(script)
            changed.append(table)
    return changed
