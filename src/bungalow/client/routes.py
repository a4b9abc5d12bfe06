"""Every call the clients make to bungalowd: its method, path, query and body, once.

A :class:`Call` is what to send; its type parameter is the shape of the answer
(or, for a stream, of each event), from :mod:`bungalow.client.shapes`. The
sync and the async client turn a call into a request the same way and differ
only in how they wait, so each of their methods is one line naming its call
here, and the REST paths live in this module alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from bungalow.client.shapes import (
        AuditEvent,
        BuildEvent,
        CostReport,
        DashboardInfo,
        DashboardToken,
        DeletedVm,
        FileStatInfo,
        HostInfo,
        ImageInfo,
        NetworkDetail,
        NetworkInfo,
        NewProject,
        ProjectInfo,
        SnapshotInfo,
        SprawlFinding,
        SprawlOutcome,
        VmInfo,
        VmMetrics,
        VncInfo,
        WaitEvent,
    )


T = TypeVar("T")

#: A request body sent as it is: bytes, or chunks of them as they are produced.
Content = bytes | Iterable[bytes] | AsyncIterable[bytes]
#: A raw NDJSON event before its shape is known (``wire.parse_event``).
RawEvent = dict[str, Any]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to bungalowd; ``T`` is the shape of what it answers."""

    method: str
    path: str
    params: Mapping[str, str | int | Sequence[str]] | None = None
    json: object = None
    content: Content | None = None

    @property
    def options(self) -> dict[str, Any]:
        """The keywords of ``httpx.Client.request`` that the call sets."""
        given = {"params": self.params, "json": self.json, "content": self.content}
        return {key: value for key, value in given.items() if value is not None}


def _vm(name: str, rest: str = "") -> str:
    return f"/v1/vms/{name}{rest}"


# -- VMs -----------------------------------------------------------------------------------------


def list_vms(
    project: str | None = None, states: Sequence[str] = (), labels: Sequence[str] = ()
) -> Call[list[VmInfo]]:
    """Every VM, or those of ``project``, in one of ``states``, with every one of ``labels``
    (``KEY=VALUE``, or ``KEY``: any value)."""
    params: dict[str, str | Sequence[str]] = {"state": list(states), "label": list(labels)}
    if project is not None:
        params["project"] = project
    return Call("GET", "/v1/vms", params={key: value for key, value in params.items() if value})


def get_vm(name: str) -> Call[VmInfo]:
    return Call("GET", _vm(name))


def create_vm(spec: Mapping[str, object]) -> Call[VmInfo]:
    """``spec`` is the daemon's ``VmCreate``: name, image, cpus, memory, disk, ports, limits..."""
    return Call("POST", "/v1/vms", json=dict(spec))


def start_vm(name: str) -> Call[VmInfo]:
    return Call("POST", _vm(name, "/start"))


def stop_vm(name: str, timeout: float) -> Call[VmInfo]:
    return Call("POST", _vm(name, "/stop"), json={"timeout": timeout})


def wait_vm(name: str, until: str, timeout: float) -> Call[WaitEvent]:
    return Call("POST", _vm(name, "/wait"), json={"until": until, "timeout": timeout})


def remove_vm(name: str) -> Call[None]:
    return Call("DELETE", _vm(name))


def pause_vm(name: str) -> Call[VmInfo]:
    return Call("POST", _vm(name, "/pause"))


def resume_vm(name: str) -> Call[VmInfo]:
    return Call("POST", _vm(name, "/resume"))


def suspend_vm(name: str) -> Call[VmInfo]:
    return Call("POST", _vm(name, "/suspend"))


def set_limits(name: str, limits: Mapping[str, object]) -> Call[VmInfo]:
    return Call("PATCH", _vm(name, "/limits"), json=dict(limits))


def connect_network(name: str, network: str, address: str | None) -> Call[VmInfo]:
    body: dict[str, object] = {"network": network}
    if address is not None:
        body["address"] = address
    return Call("POST", _vm(name, "/networks"), json=body)


def disconnect_network(name: str, network: str) -> Call[VmInfo]:
    return Call("DELETE", _vm(name, f"/networks/{network}"))


def add_ssh_keys(name: str, keys: list[str]) -> Call[VmInfo]:
    return Call("POST", _vm(name, "/ssh-keys"), json={"keys": keys})


def logs(name: str, tail: int, firmware: bool = False) -> Call[str | None]:
    """The console log (with ``firmware``, a pc VM's firmware debug log)."""
    params: dict[str, Any] = {"tail": tail}
    if firmware:
        params["firmware"] = "true"
    return Call("GET", _vm(name, "/logs"), params=params)


def follow_logs(name: str, tail: int, firmware: bool = False) -> Call[bytes]:
    """The console's last ``tail`` lines, then its output as written, until QEMU ends."""
    params: dict[str, Any] = {"tail": tail, "follow": "true"}
    if firmware:
        params["firmware"] = "true"
    return Call("GET", _vm(name, "/logs"), params=params)


def eject_media(name: str) -> Call[VmInfo]:
    return Call("DELETE", _vm(name, "/media"))


def insert_media(name: str, medium: str) -> Call[VmInfo]:
    """Insert an ISO image (name or id) or an ISO file (absolute path on the daemon's host)."""
    return Call("PUT", _vm(name, "/media"), json={"medium": medium})


# -- a pc VM's screen and keyboard ---------------------------------------------------------------


def screenshot(name: str) -> Call[bytes]:
    """The display as PNG bytes (``image/png``)."""
    return Call("GET", _vm(name, "/screenshot"))


def send_keys(name: str, keys: Sequence[str]) -> Call[None]:
    return Call("POST", _vm(name, "/keys"), json={"keys": list(keys)})


def type_text(name: str, text: str, layout: str) -> Call[None]:
    return Call("POST", _vm(name, "/type"), json={"text": text, "layout": layout})


def open_vnc(name: str) -> Call[VncInfo]:
    return Call("POST", _vm(name, "/vnc"))


# -- sandboxes, leases, idleness -----------------------------------------------------------------


def create_sandbox(spec: Mapping[str, object]) -> Call[VmInfo]:
    return Call("POST", "/v1/sandboxes", json=dict(spec))


def fork_vm(name: str, count: int) -> Call[list[VmInfo]]:
    return Call("POST", _vm(name, "/fork"), json={"count": count})


def lease_vm(name: str, timeout: str | float | None, on_expiry: str | None) -> Call[VmInfo]:
    return Call("POST", _vm(name, "/lease"), json={"timeout": timeout, "on_expiry": on_expiry})


def renew_lease(name: str, duration: str | float) -> Call[VmInfo]:
    return Call("POST", _vm(name, "/lease/renew"), json={"duration": duration})


def set_idle(name: str, policy: Mapping[str, object]) -> Call[VmInfo]:
    return Call("PATCH", _vm(name, "/idle"), json=dict(policy))


# -- snapshots and clones ------------------------------------------------------------------------


def list_snapshots(vm: str) -> Call[list[SnapshotInfo]]:
    return Call("GET", _vm(vm, "/snapshots"))


def create_snapshot(vm: str, name: str) -> Call[SnapshotInfo]:
    return Call("POST", _vm(vm, "/snapshots"), json={"name": name})


def restore_snapshot(vm: str, name: str) -> Call[VmInfo]:
    return Call("POST", _vm(vm, f"/snapshots/{name}/restore"))


def remove_snapshot(vm: str, name: str) -> Call[None]:
    return Call("DELETE", _vm(vm, f"/snapshots/{name}"))


def clone_vm(source: str, name: str, snapshot: str | None) -> Call[VmInfo]:
    return Call("POST", _vm(source, "/clone"), json={"name": name, "snapshot": snapshot})


# -- sprawl, deleted VMs, the audit log ----------------------------------------------------------


def sprawl() -> Call[list[SprawlFinding]]:
    return Call("GET", "/v1/sprawl")


def apply_sprawl() -> Call[list[SprawlOutcome]]:
    return Call("POST", "/v1/sprawl/apply")


def deleted_vms() -> Call[list[DeletedVm]]:
    return Call("GET", "/v1/deleted")


def restore_deleted(name: str) -> Call[VmInfo]:
    return Call("POST", f"/v1/deleted/{name}/restore")


def events_log(vm: str | None, since: str | None, limit: int) -> Call[list[AuditEvent]]:
    params: dict[str, str | int] = {"limit": limit}
    if vm:
        params["vm"] = vm
    if since:
        params["since"] = since
    return Call("GET", "/v1/events", params=params)


# -- inside the guest ----------------------------------------------------------------------------


def exec_command(name: str, body: Mapping[str, object]) -> Call[RawEvent]:
    """An NDJSON stream of raw exec events (``wire.decode_exec_event`` decodes them)."""
    return Call("POST", _vm(name, "/exec"), json=dict(body))


def exec_socket(name: str) -> str:
    """The websocket of an interactive exec (client/interactive.py speaks it)."""
    return _vm(name, "/exec/ws")


def console_socket(name: str) -> str:
    """The websocket bridged to the VM's serial console."""
    return _vm(name, "/console")


def stat(name: str, path: str, follow: bool = False) -> Call[FileStatInfo]:
    """What ``path`` is; a link itself, or what it points to with ``follow``."""
    return Call("GET", _vm(name, "/files/stat"), params=_path(path, follow))


def download(name: str, path: str, follow: bool = False) -> Call[bytes]:
    """A file's bytes, a folder's tar or a link (``wire.download_of`` reads which)."""
    return Call("GET", _vm(name, "/files"), params=_path(path, follow))


def _path(path: str, follow: bool) -> dict[str, str | int]:
    return {"path": path, "follow": "true"} if follow else {"path": path}


def upload_file(name: str, path: str, content: Content, mode: int) -> Call[None]:
    return Call("PUT", _vm(name, "/files"), params={"path": path, "mode": mode}, content=content)


def upload_tar(name: str, dest: str, content: Content) -> Call[None]:
    return Call("PUT", _vm(name, "/files/tar"), params={"path": dest}, content=content)


# -- images and the host -------------------------------------------------------------------------


def list_images() -> Call[list[ImageInfo]]:
    return Call("GET", "/v1/images")


def get_image(ref: str) -> Call[ImageInfo]:
    return Call("GET", f"/v1/images/{ref}")


def recipes() -> Call[list[str]]:
    return Call("GET", "/v1/images/recipes")


def build_image(name: str, force: bool) -> Call[BuildEvent]:
    return Call("POST", "/v1/images/build", json={"name": name, "force": force})


def import_image(
    path: Path, name: str, *, firmware: str = "bios", vars_file: Path | None = None
) -> Call[ImageInfo]:
    body: dict[str, Any] = {"path": str(path.absolute()), "name": name, "firmware": firmware}
    if vars_file is not None:
        body["vars"] = str(vars_file.absolute())
    return Call("POST", "/v1/images/import", json=body)


def remove_image(ref: str) -> Call[None]:
    return Call("DELETE", f"/v1/images/{ref}")


def host_info() -> Call[HostInfo]:
    return Call("GET", "/v1/host")


# -- projects, costs, metrics --------------------------------------------------------------------


def create_project(body: Mapping[str, object]) -> Call[NewProject]:
    """``body``: name, and optionally max_vcpus, max_memory, max_disk, max_vms."""
    return Call("POST", "/v1/projects", json=dict(body))


def list_projects() -> Call[list[ProjectInfo]]:
    return Call("GET", "/v1/projects")


def update_project(name: str, changes: Mapping[str, object]) -> Call[ProjectInfo]:
    return Call("PATCH", f"/v1/projects/{name}", json=dict(changes))


def remove_project(name: str, orphan_vms: bool) -> Call[None]:
    params = {"orphan_vms": "true"} if orphan_vms else None
    return Call("DELETE", f"/v1/projects/{name}", params=params)


# -- networks ------------------------------------------------------------------------------------


def create_network(body: Mapping[str, object]) -> Call[NetworkInfo]:
    """``body``: name, and optionally subnet (CIDR)."""
    return Call("POST", "/v1/networks", json=dict(body))


def list_networks() -> Call[list[NetworkInfo]]:
    return Call("GET", "/v1/networks")


def inspect_network(name: str) -> Call[NetworkDetail]:
    return Call("GET", f"/v1/networks/{name}")


def remove_network(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/networks/{name}")


def costs(by: str, since: str | None, until: str | None) -> Call[CostReport]:
    params = {"by": by, "since": since, "until": until}
    return Call("GET", "/v1/costs", params={k: v for k, v in params.items() if v is not None})


def metrics() -> Call[list[VmMetrics]]:
    return Call("GET", "/v1/metrics")


# -- the dashboard -------------------------------------------------------------------------------


def open_dashboard() -> Call[DashboardInfo]:
    return Call("POST", "/v1/dashboard")


def dashboard_token() -> Call[DashboardToken]:
    return Call("GET", "/v1/dashboard/token")
