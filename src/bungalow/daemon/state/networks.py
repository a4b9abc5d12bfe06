"""The ``networks`` and ``nics`` tables: private networks and the NICs VMs have on them.

Addresses live here, not in dnsmasq: a NIC's row is what dnsmasq's files, the
host's /etc/hosts block and the DNAT rules are made from, and the UNIQUE
constraints are what makes two NICs never share an address or a MAC.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from bungalow.daemon.state.db import Database
from bungalow.daemon.state.records import NetworkOperation, NetworkRecord, NicRecord
from bungalow.errors import ConflictError, NetworkNotFoundError


def _network(row: sqlite3.Row) -> NetworkRecord:
    return NetworkRecord(
        id=row["id"],
        name=row["name"],
        subnet=IPv4Network(row["subnet"]),
        gateway=IPv4Interface(row["gateway"]),
        bridge=row["bridge"],
        domain=row["domain"],
        created=row["created"],
        operation=None if row["operation"] is None else NetworkOperation(row["operation"]),
    )


def _nic(row: sqlite3.Row) -> NicRecord:
    return NicRecord(
        vm_id=row["vm_id"],
        network_id=row["network_id"],
        index=row["index"],
        mac=row["mac"],
        address=IPv4Address(row["address"]),
        hostname=row["hostname"],
    )


def _not_found(name: str) -> NetworkNotFoundError:
    return NetworkNotFoundError(
        f"There is no network named {name}; `bungalow network ls` lists them."
    )


class NetworkTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    def list(self) -> builtins.list[NetworkRecord]:
        return [_network(row) for row in self._db.all("SELECT * FROM networks ORDER BY name")]

    def find(self, name: str) -> NetworkRecord | None:
        row = self._db.one("SELECT * FROM networks WHERE name = ?", (name,))
        return _network(row) if row else None

    def get(self, name: str) -> NetworkRecord:
        """The network ``name``; NetworkNotFoundError with a sentence when there is none."""
        network = self.find(name)
        if network is None:
            raise _not_found(name)
        return network

    def by_id(self, network_id: int) -> NetworkRecord | None:
        row = self._db.one("SELECT * FROM networks WHERE id = ?", (network_id,))
        return _network(row) if row else None

    def insert(
        self,
        name: str,
        subnet: IPv4Network,
        gateway: IPv4Interface,
        domain: str,
        bridge_of: Callable[[int], str],
        created: float,
    ) -> NetworkRecord:
        """Add a network with operation ``create``; its bridge is named from its new id
        (ids are never reused). ConflictError when the name is taken."""
        with self._db.transaction():
            try:
                cursor = self._db.execute(
                    "INSERT INTO networks (name, subnet, gateway, bridge, domain, created, "
                    "operation) VALUES (?, ?, ?, '', ?, ?, ?)",
                    (name, str(subnet), str(gateway), domain, created, NetworkOperation.CREATE),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(
                    f"A network named {name} already exists; choose another name."
                ) from None
            network_id = int(cursor.lastrowid or 0)
            self._db.execute(
                "UPDATE networks SET bridge = ? WHERE id = ?", (bridge_of(network_id), network_id)
            )
            row = self._db.one("SELECT * FROM networks WHERE id = ?", (network_id,))
        assert row is not None
        return _network(row)

    def set_operation(self, network_id: int, operation: NetworkOperation | None) -> None:
        self._db.execute(
            "UPDATE networks SET operation = ? WHERE id = ?",
            (None if operation is None else str(operation), network_id),
        )

    def delete(self, network_id: int) -> None:
        """Remove the network's row and any NIC rows left on it, together."""
        with self._db.transaction():
            self._db.execute("DELETE FROM nics WHERE network_id = ?", (network_id,))
            self._db.execute("DELETE FROM networks WHERE id = ?", (network_id,))


class NicTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    def of_vm(self, vm_id: str) -> builtins.list[NicRecord]:
        """The VM's NICs, by index."""
        rows = self._db.all('SELECT * FROM nics WHERE vm_id = ? ORDER BY "index"', (vm_id,))
        return [_nic(row) for row in rows]

    def on_network(self, network_id: int) -> builtins.list[NicRecord]:
        """The NICs on a network, by address."""
        rows = self._db.all("SELECT * FROM nics WHERE network_id = ?", (network_id,))
        return sorted((_nic(row) for row in rows), key=lambda nic: nic.address)

    def list(self) -> builtins.list[NicRecord]:
        return [_nic(row) for row in self._db.all('SELECT * FROM nics ORDER BY vm_id, "index"')]

    def macs(self) -> set[str]:
        return {row["mac"] for row in self._db.all("SELECT mac FROM nics")}

    def insert(self, nic: NicRecord) -> NicRecord:
        """Add a NIC; ConflictError with a sentence when the VM already has one on the
        network, or its address or MAC is taken (someone else got it meanwhile)."""
        try:
            self._db.execute(
                'INSERT INTO nics (vm_id, network_id, "index", mac, address, hostname) '
                "VALUES (?, ?, ?, ?, ?, ?)",
                (nic.vm_id, nic.network_id, nic.index, nic.mac, str(nic.address), nic.hostname),
            )
        except sqlite3.IntegrityError as error:
            what = str(error)
            if "address" in what:
                raise ConflictError(
                    f"The address {nic.address} is taken on that network; choose another."
                ) from None
            if "mac" in what:
                raise ConflictError(
                    f"The MAC address {nic.mac} is taken; choose another."
                ) from None
            raise ConflictError(f"{nic.hostname} already has a NIC on that network.") from None
        return nic

    def delete(self, vm_id: str, network_id: int) -> bool:
        """Remove the VM's NIC on the network; False when it had none."""
        cursor = self._db.execute(
            "DELETE FROM nics WHERE vm_id = ? AND network_id = ?", (vm_id, network_id)
        )
        return cursor.rowcount > 0

    def rename(self, vm_id: str, hostname: str) -> None:
        """The VM's NICs answer to ``hostname`` from now on."""
        self._db.execute("UPDATE nics SET hostname = ? WHERE vm_id = ?", (hostname, vm_id))
