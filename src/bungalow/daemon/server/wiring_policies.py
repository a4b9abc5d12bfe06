"""The sprawl policies wired together: one object the daemon builds and the routes reach.

Leases, idleness, suspend, snapshot-and-delete with restore, sprawl and the
reaper share one PolicyActions and one Clock, made here in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from starlette.requests import HTTPConnection

from bungalow.daemon.policies.actions import PolicyActions
from bungalow.daemon.policies.idle import Idleness
from bungalow.daemon.policies.leases import Leases
from bungalow.daemon.policies.reaper import Reaper
from bungalow.daemon.policies.restorable import Restorable
from bungalow.daemon.policies.settings import PolicyConfig
from bungalow.daemon.policies.sprawl import Price, Sprawl
from bungalow.daemon.snapshots.operations import Snapshots
from bungalow.daemon.snapshots.suspend import Suspender
from bungalow.daemon.state.clock import Clock
from bungalow.daemon.telemetry.metrics import Metrics
from bungalow.errors import UserError
from bungalow.units import parse_duration


@dataclass(frozen=True)
class Policies:
    config: PolicyConfig
    clock: Clock
    suspender: Suspender
    restorable: Restorable
    actions: PolicyActions
    leases: Leases
    idleness: Idleness
    sprawl: Sprawl
    reaper: Reaper


def build_policies(
    snapshots: Snapshots, metrics: Metrics, config: PolicyConfig, price: Price | None = None
) -> Policies:
    manager = snapshots.m
    clock = manager.clock
    suspender = Suspender(snapshots)
    restorable = Restorable(snapshots, suspender, clock)
    actions = PolicyActions(manager, suspender, restorable, config.retention)
    leases = Leases(manager, actions, config, clock)
    idleness = Idleness(manager.store, metrics, actions, config, clock)
    sprawl = Sprawl(manager.store, leases, idleness, actions, config, clock, price)
    reaper = Reaper(leases, idleness, restorable, clock, config.reaper_interval)
    return Policies(config, clock, suspender, restorable, actions, leases, idleness, sprawl, reaper)


def policies_of(connection: HTTPConnection) -> Policies:
    return cast(Policies, connection.app.state.policies)


def parse_since(text: str, now: float) -> float:
    """A moment from ``1h`` (that long before now) or a date ``2026-11-01[T10:00]``."""
    try:
        return now - parse_duration(text, what="time")
    except UserError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UserError(
            f"The time {text!r} is neither a duration such as 1h nor a date such as 2026-11-01."
        ) from None
