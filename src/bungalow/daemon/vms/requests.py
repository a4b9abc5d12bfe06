"""Plain request values the API layer hands to the VM and snapshot services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bungalow.daemon.state.records import VmRecord
from bungalow.daemon.vms.nics import NetworkChoice
from bungalow.images.recipes import DEFAULT_RECIPE


@dataclass(frozen=True)
class Ownership:
    """Whose a VM is: its project (None: the admin's), owner, labels, and who asked for it
    (``admin`` or ``project NAME``)."""

    project: str | None = None
    owner: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created_by: str = ""

    @classmethod
    def of(cls, vm: VmRecord) -> Ownership:
        return cls(vm.project, vm.owner, vm.labels, vm.created_by)


#: The image ``launch`` boots when none is named (the recipe images/recipes.py builds first).
DEFAULT_IMAGE = DEFAULT_RECIPE


@dataclass(frozen=True)
class CreateRequest:
    """A VM to boot from an image; sizes in bytes, ``expires_at`` in seconds since the epoch."""

    name: str
    #: None: debian-12, or for an installer VM (``iso``) the ISO's own image.
    image: str | None = None
    cpus: int = 1
    memory: int = 512 << 20
    disk: int | None = None
    ports: tuple[str, ...] = ()
    accel: str = "auto"
    profile: str | None = None
    #: bios, uefi or uefi-secure; None: what the image needs (bios for bungalow's own).
    firmware: str | None = None
    tpm: bool = False
    sandbox: bool = False
    expires_at: float | None = None
    on_expiry: str = "delete"
    idle: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    #: The balloon floor in bytes (vms/balloon.py); None: never ballooned.
    memory_min: int | None = None
    ownership: Ownership = field(default_factory=Ownership)
    origin: str = ""
    #: Private networks, first one first; none: user-mode networking.
    networks: tuple[NetworkChoice, ...] = ()
    #: cloud-init user-data, unchecked yet (plan.py checks it against the image).
    user_data: str | None = None
    #: SSH public keys, one per item, unchecked yet.
    ssh_keys: tuple[str, ...] = ()
    #: An installer VM's ISO (an image's name or id, or a file's absolute path) instead of
    #: ``image`` (which must be None then): a blank disk of ``disk`` bytes and the ISO in its
    #: CD-ROM drive (media.py).
    iso: str | None = None

    @property
    def image_ref(self) -> str:
        """The image a VM that is no installer VM boots: ``image``, else debian-12."""
        return self.image or DEFAULT_IMAGE


@dataclass(frozen=True)
class CloneRequest:
    """A VM to make from a snapshot; ``expires_at`` and ``sandbox`` come from sandboxes."""

    name: str
    parent: str
    sandbox: bool = False
    expires_at: float | None = None
    on_expiry: str = "delete"
    pool: str | None = None
    ownership: Ownership = field(default_factory=Ownership)
    limits: dict[str, Any] = field(default_factory=dict)
    memory_min: int | None = None
    idle: dict[str, Any] = field(default_factory=dict)
    #: Host port forwards; only a VM that comes back (restore-deleted) has its own again.
    ports: tuple[str, ...] = ()
    #: The creation record; by default which snapshot of which VM it came from.
    origin: str = ""
    #: Networks instead of the snapshot's (a sandbox on a network, from a template).
    networks: tuple[NetworkChoice, ...] = ()
    #: The source's provisioning: the clone gets a seed of its own (a new instance-id).
    user_data: str | None = None
    ssh_keys: tuple[str, ...] = ()

    @classmethod
    def inheriting(cls, source: VmRecord, name: str, **changes: Any) -> CloneRequest:
        """A copy of ``source`` called ``name``: its project, owner, labels, limits, balloon
        floor and provisioning (user-data, SSH keys)."""
        fields: dict[str, Any] = {
            "name": name, "parent": source.name, "ownership": Ownership.of(source),
            "limits": source.limits, "memory_min": source.memory_min,
            "user_data": source.user_data,
            "ssh_keys": tuple(source.ssh_keys),
        }  # fmt: skip
        return cls(**{**fields, **changes})
