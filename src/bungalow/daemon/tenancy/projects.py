"""Projects: a name, an API token and quotas; a project's token sees only its own VMs.

The token is shown once, when the project is made; the database keeps only its
sha256. Quotas bound what the project's VMs may hold together: vCPUs and
memory of those with a QEMU, disks of all, and how many VMs there are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass

from bungalow.daemon.state.lifecycle import ACTIVE_STATES
from bungalow.daemon.state.store import Store, VmRecord
from bungalow.errors import CapacityError, ConflictError, NotFoundError
from bungalow.host.allocation import Shape
from bungalow.names import validate_name
from bungalow.units import format_size

TOKEN_PREFIX = "bgw_"


@dataclass(frozen=True)
class Project:
    name: str
    token_hash: str
    max_vcpus: int | None = None
    max_memory: int | None = None
    max_disk: int | None = None
    max_vms: int | None = None
    created: float = 0.0
    #: The project's default idle policy as JSON (daemon/idle.py), below each VM's own.
    idle: str = "{}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Projects:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._db = store.connection

    def create(self, name: str, **quota: int | None) -> tuple[Project, str]:
        """Make a project with these quotas (``max_vcpus``...); its idle policy is set apart."""
        validate_name(name, what="project")
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        project = Project(
            name=name, token_hash=_hash(token), created=time.time(),
            max_vcpus=quota.get("max_vcpus"), max_memory=quota.get("max_memory"),
            max_disk=quota.get("max_disk"), max_vms=quota.get("max_vms"),
        )  # fmt: skip
        data = asdict(project)
        try:
            self._db.execute(
                f"INSERT INTO projects ({', '.join(data)}) VALUES "
                f"({', '.join(':' + key for key in data)})",
                data,
            )
        except sqlite3.IntegrityError:
            raise ConflictError(
                f"A project named {name} already exists; choose another name."
            ) from None
        self.store.add_event(None, "project", f"project {name} created")
        return project, token

    def list(self) -> list[Project]:
        rows = self._db.execute("SELECT * FROM projects ORDER BY name").fetchall()
        return [Project(**dict(row)) for row in rows]

    def get(self, name: str) -> Project:
        row = self._db.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"There is no project named {name}; `bungalow project ls` lists them."
            )
        return Project(**dict(row))

    def set_quota(self, name: str, **quota: int | None) -> Project:
        project = self.get(name)
        for key, value in quota.items():
            self._db.execute(f"UPDATE projects SET {key} = ? WHERE name = ?", (value, name))
        del project
        return self.get(name)

    def set_idle(self, name: str, changes: dict[str, object]) -> Project:
        """Merge ``changes`` (parsed by policy.idle_changes) into the project's idle policy."""
        idle = {**json.loads(self.get(name).idle or "{}"), **changes}
        self._db.execute("UPDATE projects SET idle = ? WHERE name = ?", (json.dumps(idle), name))
        self.store.add_event(None, "project", f"project {name} idle policy: {idle}")
        return self.get(name)

    def remove(self, name: str, *, orphan_vms: bool = False) -> None:
        """Remove a project; with ``orphan_vms`` its VMs stay, listed by ``sprawl`` as orphans."""
        self.get(name)
        left = [vm.name for vm in self.store.list() if vm.project == name]
        if left and not orphan_vms:
            raise ConflictError(
                f"The project {name} still has VMs ({', '.join(left)}); remove them first, "
                f"or keep them as orphans with `bungalow project rm {name} --orphan-vms`."
            )
        self._db.execute("DELETE FROM projects WHERE name = ?", (name,))
        self.store.add_event(None, "project", f"project {name} removed")

    def resolve(self, token: str) -> Project | None:
        """The project whose token this is, or None (compared in constant time)."""
        digest = _hash(token)
        for project in self.list():
            if hmac.compare_digest(project.token_hash, digest):
                return project
        return None

    def usage(self, name: str, exclude: str | None = None) -> tuple[Shape, int]:
        """What the project's VMs hold (vCPUs and memory if active, disks) and how many."""
        held, count = Shape(), 0
        for vm in self.store.list():
            if vm.project != name or vm.name == exclude:
                continue
            count += 1
            active = vm.state in ACTIVE_STATES
            held += Shape(vm.cpus if active else 0, vm.memory if active else 0, vm.disk_size)
        return held, count

    def check(self, vm: VmRecord, *, starting: bool) -> None:
        """Refuse a VM its project's quota has no room for, naming the quota and what is left."""
        if vm.project is None:
            return
        if starting and vm.project not in {p.name for p in self.list()}:
            return  # an orphan (its project was removed with --orphan-vms) has no quota left
        project = self.get(vm.project)
        held, count = self.usage(project.name, exclude=vm.name)
        if not starting and project.max_vms is not None and count + 1 > project.max_vms:
            raise CapacityError(
                f"The project {project.name} has reached its quota of {project.max_vms} "
                f"VM{'s' if project.max_vms != 1 else ''}; remove one first."
            )
        checks = (
            ("vCPUs", project.max_vcpus, held.cpus, vm.cpus, str),
            ("memory", project.max_memory, held.memory, vm.memory, format_size),
            ("disk", project.max_disk, held.disk, 0 if starting else vm.disk_size, format_size),
        )
        for what, quota, used, asked, show in checks:
            if quota is not None and used + asked > quota:
                raise CapacityError(
                    f"The project {project.name}'s {what} quota is {show(quota)}: asked for "
                    f"{show(asked)}, {show(max(0, quota - used))} left; stop or remove one "
                    "of its VMs, or ask the admin to raise the quota."
                )
