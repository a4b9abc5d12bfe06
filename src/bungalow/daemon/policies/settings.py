"""The sprawl policies' settings: lease and idle actions, thresholds, the reaper's schedule.

::

    [reaper]
    interval = "1m"         # how often idleness, sprawl and retention are checked
    retention = "7d"        # how long a snapshot-and-delete'd VM can be restored

    [leases]
    warn_before = "10m"     # the lease-warning event comes this long before the action
    grace = "1m"            # a warning recorded late is followed by the action no sooner
    on_expiry = "stop"      # what --ttl without --on-expiry does

    [idle]                  # defaults; a project's (`project set`) and a VM's own come first
    after = "1h"            # idle this long: listed by `sprawl`, and acted on if action is set
    action = "none"         # stop, suspend, snapshot-and-delete, delete or none
    cpu = "5%"              # busy above this share of one vCPU (an idle TCG guest: 0.5-1.5%)
    disk = "64K"            # bytes a second read or written
    net = "16K"             # bytes a second received or sent

    [sprawl]
    stopped_after = "7d"    # a stopped or suspended VM this old is listed as holding disk
    idle_action = "suspend" # what `sprawl --apply` does to an idle VM without an idle action
    orphan_action = "stop"  # ... to a running VM whose project or owner is gone
    stopped_action = "snapshot-and-delete"
    owners = "any"          # "local-users": an owner this host's passwd does not know is gone

Destructive actions (delete, snapshot-and-delete) are carried out by the reaper
only when the VM itself asked for them (``--on-expiry``, ``--on-idle``);
from a project's or this file's defaults they are listed, and done by
``sprawl --apply``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from bungalow.errors import UserError
from bungalow.units import parse_positive_duration, parse_size


class Action(StrEnum):
    """What a policy (a lease, idleness, sprawl) may do to a VM."""

    STOP = "stop"
    SUSPEND = "suspend"
    SNAPSHOT_AND_DELETE = "snapshot-and-delete"
    DELETE = "delete"
    NONE = "none"


#: The actions a lease or a sprawl setting may name (``none`` only where it is allowed).
ACTIONS = tuple(action for action in Action if action is not Action.NONE)
#: Actions that lose the running machine: the reaper takes them only when the VM asked.
DESTRUCTIVE = frozenset({Action.DELETE, Action.SNAPSHOT_AND_DELETE})


def parse_action(value: object, *, what: str, allow_none: bool = False) -> Action:
    """One of :data:`ACTIONS` (and ``none`` if allowed), else a sentence listing them."""
    known = (*ACTIONS, Action.NONE) if allow_none else ACTIONS
    if value not in known:
        names = ", ".join(str(action) for action in known)
        raise UserError(f"The {what} {value!r} is unknown; use one of {names}.")
    return Action(str(value))


def parse_share(value: object, *, what: str) -> float:
    """A share of one vCPU: ``5%`` or ``0.05``."""
    text = str(value).strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 64:
        raise UserError(f"The {what} {value!r} is not a CPU share; write it like 5% or 0.05.")
    return share


@dataclass(frozen=True)
class IdlePolicy:
    """When a running VM counts as idle, and what is done about it."""

    after: float = 3600.0
    action: str = Action.NONE
    cpu: float = 0.05  # of one vCPU
    disk: float = 64 << 10  # bytes/s, reads and writes together
    net: float = 16 << 10  # bytes/s, in and out together

    def overlaid(self, changes: dict[str, Any]) -> IdlePolicy:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def idle_changes(values: dict[str, Any], *, where: str = "") -> dict[str, Any]:
    """Parse user values (``30m``, ``5%``, ``64K``) of an idle policy into plain numbers."""
    parsed: dict[str, Any] = {}
    prefix = f"{where}." if where else "idle "
    for key, value in values.items():
        if value is None:
            continue
        if key == "after":
            parsed[key] = parse_positive_duration(value, what=f"{prefix}after")
        elif key == "action":
            parsed[key] = parse_action(value, what=f"{prefix}action", allow_none=True)
        elif key == "cpu":
            parsed[key] = parse_share(value, what=f"{prefix}cpu threshold")
        elif key in ("disk", "net"):
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise UserError(f"The {prefix}{key} rate {value!r} is not a size; write it as 64K.")
            parsed[key] = float(parse_size(value, what=f"{prefix}{key} rate"))
        else:
            raise UserError(
                f"The idle setting {key!r} is unknown; use after, action, cpu, disk or net."
            )
    return parsed


@dataclass(frozen=True)
class PolicyConfig:
    reaper_interval: float = 60.0
    retention: float = 7 * 86400.0
    warn_before: float = 600.0
    grace: float = 60.0
    on_expiry: Action = Action.STOP
    idle: IdlePolicy = field(default_factory=IdlePolicy)
    stopped_after: float = 7 * 86400.0
    idle_action: Action = Action.SUSPEND
    orphan_action: Action = Action.STOP
    stopped_action: Action = Action.SNAPSHOT_AND_DELETE
    owners: str = "any"


def load_policy(data: dict[str, Any]) -> PolicyConfig:
    """The policy sections of a parsed config.toml; a bad value is one sentence naming it."""
    reaper: dict[str, Any] = data.get("reaper", {})
    leases: dict[str, Any] = data.get("leases", {})
    sprawl: dict[str, Any] = data.get("sprawl", {})
    default = PolicyConfig()

    def duration(section: dict[str, Any], name: str, key: str, fallback: float) -> float:
        if key not in section:
            return fallback
        return parse_positive_duration(section[key], what=f"{name}.{key} in config.toml")

    def action(key: str, fallback: Action) -> Action:
        return parse_action(sprawl.get(key, fallback), what=f"sprawl.{key} in config.toml")

    owners = sprawl.get("owners", "any")
    if owners not in ("any", "local-users"):
        raise UserError(f"sprawl.owners in config.toml must be any or local-users, not {owners!r}.")
    return PolicyConfig(
        reaper_interval=duration(reaper, "reaper", "interval", default.reaper_interval),
        retention=duration(reaper, "reaper", "retention", default.retention),
        warn_before=duration(leases, "leases", "warn_before", default.warn_before),
        grace=duration(leases, "leases", "grace", default.grace),
        on_expiry=parse_action(
            leases.get("on_expiry", default.on_expiry), what="leases.on_expiry in config.toml"
        ),
        idle=IdlePolicy().overlaid(idle_changes(data.get("idle", {}), where="idle")),
        stopped_after=duration(sprawl, "sprawl", "stopped_after", default.stopped_after),
        idle_action=action("idle_action", default.idle_action),
        orphan_action=action("orphan_action", default.orphan_action),
        stopped_action=action("stopped_action", default.stopped_action),
        owners=owners,
    )
