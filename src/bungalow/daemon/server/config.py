"""The daemon's settings, from ``<data dir>/config.toml``; every key is optional.

::

    [allocation]        # how far the host may promise beyond what it has (as Nova)
    cpu = 4.0           # vCPUs per host CPU
    memory = 1.0
    disk = 1.0

    [sandboxes]
    pool = 2            # sandboxes of each shape kept started and waiting (default 1)
    pool_idle = "10m"   # a shape's pool lapses (its VMs removed) when no sandbox of it
                        # was asked for this long; the next one brings it back
    timeout = "10m"     # the timeout a sandbox gets when its creator names none

    [prices]                # what `bungalow cost`, `ls` and `inspect` charge (costs.py)
    vcpu_hour = 0.02        # per vCPU-hour while a VM runs (paused counts as running)
    memory_gib_hour = 0.0025  # per GiB-hour of memory while it runs
    disk_gib_month = 0.08   # per GiB-month (730 h) of disk and snapshots, running or not
    currency = "USD"        # a name shown with the amounts; it converts nothing

    [noisy]                 # noisy neighbours (noisy.py)
    policy = "throttle"     # hold a VM starving others to its share (default "off": mark only)
    disk_wait = "20ms"      # average disk request time above which a VM waits for its disk

    [reaper], [leases], [idle], [sprawl]: the sprawl policies (daemon/policy.py)

    [dashboard]             # the web dashboard (server/dashboard.py); off unless enabled
    enabled = true          # open its listener when bungalowd starts
    listen = "127.0.0.1:8250"   # host:port; beyond loopback it always speaks TLS
    tls_cert = "/etc/ssl/bungalow.pem"  # and tls_key: else a self-signed pair is made once
    tls_key = "/etc/ssl/bungalow.key"
    session_minutes = 720   # a login lasts this long
    origins = ["https://vms.example.org"]  # Origins allowed besides the listener's own

A bad file stops the daemon with a sentence naming the key, rather than
running with settings nobody asked for.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bungalow.daemon.policies.noisy import NoisyConfig, load_noisy
from bungalow.daemon.policies.settings import PolicyConfig, load_policy
from bungalow.daemon.server.dashboard_config import DashboardConfig, load_dashboard
from bungalow.daemon.state.records import Rates
from bungalow.errors import UserError
from bungalow.host.allocation import Ratios
from bungalow.units import parse_duration

MAX_POOL = 16


#: One waiting sandbox per shape in use: the first command of a sandbox taken from the
#: pool answers in about 0.1 s against 0.4-0.8 s for a fresh clone (bench/sandbox.py),
#: for one idle clone's memory (about 40 MiB) per shape.
DEFAULT_POOL = 1
#: Seconds a shape's warm pool waits unused before it lapses: a pool costs memory
#: (512M a sandbox by default) only while sandboxes of its shape are being asked for.
DEFAULT_POOL_IDLE = 600.0


@dataclass(frozen=True)
class Config:
    sandbox_pool: int = DEFAULT_POOL
    sandbox_pool_idle: float = DEFAULT_POOL_IDLE
    sandbox_timeout: float = 600.0
    ratios: Ratios = field(default_factory=Ratios)
    rates: Rates = field(default_factory=Rates)
    currency: str = "USD"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    noisy: NoisyConfig = field(default_factory=NoisyConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)


def load_config(path: Path) -> Config:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Config()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML ({exc}); fix or remove it.") from None
    sandboxes: dict[str, Any] = data.get("sandboxes", {})
    pool = sandboxes.get("pool", DEFAULT_POOL)
    if not isinstance(pool, int) or not 0 <= pool <= MAX_POOL:
        raise UserError(
            f"sandboxes.pool in {path} must be a whole number from 0 to {MAX_POOL}, not {pool!r}."
        )
    timeout = parse_duration(sandboxes.get("timeout", 600.0), what="sandboxes.timeout")
    if timeout <= 0:
        raise UserError(f"sandboxes.timeout in {path} must be positive, such as 10m.")
    pool_idle = parse_duration(
        sandboxes.get("pool_idle", DEFAULT_POOL_IDLE), what="sandboxes.pool_idle"
    )
    if pool_idle <= 0:
        raise UserError(
            f"sandboxes.pool_idle in {path} must be positive, such as 10m; "
            "for no pool at all, set pool = 0."
        )
    allocation: dict[str, Any] = data.get("allocation", {})
    ratios = {}
    for key in ("cpu", "memory", "disk"):
        value = allocation.get(key, getattr(Ratios(), key))
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise UserError(
                f"allocation.{key} in {path} must be a positive number such as 1.0, not {value!r}."
            )
        ratios[key] = float(value)
    rates, currency = _prices(data.get("prices", {}), path)
    return Config(
        sandbox_pool=pool, sandbox_pool_idle=pool_idle, sandbox_timeout=timeout,
        ratios=Ratios(**ratios),
        rates=rates, currency=currency, policy=load_policy(data),
        noisy=load_noisy(data.get("noisy", {}), path),
        dashboard=load_dashboard(data.get("dashboard", {}), path),
    )  # fmt: skip


def _prices(table: dict[str, Any], path: Path) -> tuple[Rates, str]:
    keys = ("vcpu_hour", "memory_gib_hour", "disk_gib_month")
    for key in table:
        if key not in (*keys, "currency"):
            raise UserError(
                f"prices.{key} in {path} is not a setting; the prices are vcpu_hour, "
                "memory_gib_hour, disk_gib_month and currency."
            )
    values = {}
    for key in keys:
        value = table.get(key, getattr(Rates(), key))
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1e9:
            raise UserError(
                f"prices.{key} in {path} must be a number of 0 or more such as 0.02, not {value!r}."
            )
        values[key] = float(value)
    currency = table.get("currency", "USD")
    if not isinstance(currency, str) or not 0 < len(currency) <= 8 or not currency.isalpha():
        raise UserError(f"prices.currency in {path} must be a short name such as USD or EUR.")
    return Rates(**values), currency
