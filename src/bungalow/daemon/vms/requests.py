"""Plain request values the API layer hands to the manager."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CreateRequest:
    name: str
    image: str = "debian-12"
    cpus: int = 1
    memory: int = 512 << 20
    disk: int | None = None
    ports: tuple[str, ...] = ()
    accel: str = "auto"
    profile: str | None = None
    sandbox: bool = False
    expires_at: float | None = None
    on_expiry: str = "delete"
    idle: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    project: str | None = None
    owner: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created_by: str = ""
    origin: str = ""
