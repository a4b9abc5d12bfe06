"""Projects: a name, an API token and quotas; a project's token sees only its own VMs.

The token is shown once, when the project is made; the database keeps only its
sha256. Quotas bound what the project's VMs may hold together: vCPUs and
memory of those with a QEMU, disks of all, and how many VMs there are.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from bungalow.daemon.state.lifecycle import ACTIVE_STATES
from bungalow.daemon.state.records import Project, VmRecord
from bungalow.daemon.state.store import Store
from bungalow.errors import CapacityError, ConflictError
from bungalow.host.allocation import Shape
from bungalow.names import validate_name
from bungalow.units import format_size

TOKEN_PREFIX = "bgw_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Projects:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, name: str, **quota: int | None) -> tuple[Project, str]:
        """Make a project with these quotas (``max_vcpus``...); its token, shown this once."""
        validate_name(name, what="project")
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        project = Project(
            name=name, token_hash=_hash(token), created=self.store.clock.now(),
            max_vcpus=quota.get("max_vcpus"), max_memory=quota.get("max_memory"),
            max_disk=quota.get("max_disk"), max_vms=quota.get("max_vms"),
        )  # fmt: skip
        self.store.projects.insert(project)
        self.store.events.add(None, "project-created", f"project {name} created", subject=name)
        return project, token

    def list(self) -> list[Project]:
        return self.store.projects.list()

    def get(self, name: str) -> Project:
        return self.store.projects.get(name)

    def change(self, name: str, quota: dict[str, int | None], idle: dict[str, Any]) -> Project:
        """Set the quotas given, and merge ``idle`` (parsed by policies' idle_changes) into
        the project's default idle policy."""
        project = self.store.projects.set_quota(name, quota)
        if idle:
            merged = {**project.idle, **idle}
            project = self.store.projects.set_idle(name, merged)
            self.store.events.add(
                None, "project-idle", f"project {name} idle policy: {merged}", subject=name
            )
        return project

    def remove(self, name: str, *, orphan_vms: bool = False) -> None:
        """Remove a project; with ``orphan_vms`` its VMs stay, listed by ``sprawl`` as orphans."""
        self.get(name)
        left = [vm.name for vm in self.store.vms.list() if vm.project == name]
        if left and not orphan_vms:
            raise ConflictError(
                f"The project {name} still has VMs ({', '.join(left)}); remove them first, "
                f"or keep them as orphans with `bungalow project rm {name} --orphan-vms`."
            )
        self.store.projects.delete(name)
        self.store.events.add(None, "project-removed", f"project {name} removed", subject=name)

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
        for vm in self.store.vms.list():
            if vm.project != name or vm.name == exclude:
                continue
            count += 1
            active = vm.state in ACTIVE_STATES
            held += Shape(vm.cpus if active else 0, vm.memory if active else 0, vm.disk_size)
        return held, count

    def check(self, vm: VmRecord, starting: bool) -> None:
        """Refuse a VM its project's quota has no room for, naming the quota and what is left."""
        if vm.project is None:
            return
        project = self.store.projects.find(vm.project)
        if project is None:
            if starting:
                return  # an orphan (its project removed with --orphan-vms) has no quota left
            project = self.get(vm.project)  # a new VM's project must exist: NotFoundError
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
