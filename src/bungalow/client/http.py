"""A synchronous client for bungalowd's REST API over its Unix socket.

Every error the daemon reports comes back as the same :mod:`bungalow.errors`
class it was raised as, so callers catch meaning, not status codes. Answers
are plain dicts typed by :mod:`bungalow.client.shapes`; the requests behind
each method are in :mod:`bungalow.client.routes`.

``Client(transport=httpx.MockTransport(handler))`` answers from ``handler``
instead of a daemon, with nothing started and no socket: that is how the SDK
and the CLI are tested without VMs.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpx

from bungalow.client import routes, wire
from bungalow.client.autostart import daemon_answers, ensure_daemon
from bungalow.client.results import ExecDeadline, overdue_exit
from bungalow.client.routes import Call
from bungalow.paths import DataDir

if TYPE_CHECKING:
    from bungalow.client.interactive import ConsoleSession, ExecSession
    from bungalow.client.shapes import (
        AuditEvent,
        BuildEvent,
        CostReport,
        DashboardInfo,
        DeletedVm,
        ExecEvent,
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

__all__ = ["Client"]

T = TypeVar("T")

#: Connecting and sending give up after 30 s; reading waits as long as a command runs.
TIMEOUT = httpx.Timeout(30.0, read=None)
#: No connection is kept for the next call: a Unix socket connects in microseconds, and a
#: connection kept to a daemon that was killed meanwhile fails on use (ECONNRESET), where
#: a new one is refused cleanly and the daemon is started again (``_send``).
LIMITS = httpx.Limits(max_keepalive_connections=0)
#: For :meth:`Client.if_running`: a daemon that does not answer within this is taken as absent.
QUICK = httpx.Timeout(1.0)


def reading_within(seconds: float | None) -> dict[str, Any]:
    """Request keywords that make reading the answer give up after ``seconds`` of silence
    (``httpx.ReadTimeout``, which only such a request meets); none for None."""
    return {} if seconds is None else {"timeout": httpx.Timeout(TIMEOUT.connect, read=seconds)}


def _raise_for(response: httpx.Response) -> None:
    if not response.is_success:
        response.read()
        raise wire.error_for(response)


class Client:
    """One connection pool to one daemon; starts the daemon when it is not running.

    ``data`` is the daemon's data directory (default ``$BUNGALOW_HOME``), whose
    socket the client connects to; ``token`` a project's API token (default
    ``$BUNGALOW_TOKEN``, none: the host's admin). ``transport`` replaces the
    socket (an ``httpx.MockTransport`` in tests); with one, no daemon is started.
    ``timeout`` bounds connecting, sending and reading (default: 30 s to connect and
    send, no bound on reading, as a command runs as long as it runs).
    Every method raises the :mod:`bungalow.errors` class the daemon answered
    with, and :class:`~bungalow.errors.DaemonError` when it cannot be reached.
    """

    def __init__(
        self,
        data: DataDir | None = None,
        *,
        autostart: bool = True,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout = TIMEOUT,
    ) -> None:
        self.data = data or DataDir.from_env()
        self._autostart = autostart and transport is None
        if transport is None:
            if autostart:
                ensure_daemon(self.data)
            # A Unix socket carries no TLS: skipping the CA bundle saves ~50 ms a command.
            transport = httpx.HTTPTransport(uds=str(self.data.socket), verify=False, limits=LIMITS)
        self.headers = wire.auth_headers(token)
        self._http = httpx.Client(
            transport=transport, base_url=wire.BASE_URL, timeout=timeout, headers=self.headers
        )

    @classmethod
    def if_running(cls, data: DataDir | None = None) -> Client | None:
        """A client of the daemon already running on ``data`` (default ``$BUNGALOW_HOME``),
        or None when none answers there: it never starts one, and every call gives up
        after a second (:data:`QUICK`). For shell completion, which must never wait."""
        data = data or DataDir.from_env()
        if not daemon_answers(data, timeout=QUICK.connect or 1.0):
            return None
        return cls(data, autostart=False, timeout=QUICK)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the calls -------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> Any:
        """Send one request; a daemon that is not there (killed, or not started yet) is
        started and the request sent again, once (see :func:`wire.worth_retrying`).
        DaemonError when the connection is lost; ``httpx.ReadTimeout`` as it is, for the
        caller that asked for one (:func:`reading_within`)."""
        try:
            try:
                request = self._http.build_request(method, path, **kwargs)
                return self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if not (self._autostart and wire.worth_retrying(method, exc)):
                    raise
                ensure_daemon(self.data)
                request = self._http.build_request(method, path, **kwargs)
                return self._http.send(request, stream=stream)
        except httpx.ReadTimeout:
            raise
        except httpx.TransportError as exc:
            raise wire.connection_lost(self.data, exc) from None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A raw call: the answer's JSON, text or None. The methods below are typed."""
        response: httpx.Response = self._send(method, path, **kwargs)
        _raise_for(response)
        return wire.response_value(response)

    def send(self, call: Call[T]) -> T:
        """Make one call of :mod:`bungalow.client.routes`; its answer has the call's shape."""
        answer: T = self.request(call.method, call.path, **call.options)
        return answer

    @contextmanager
    def stream(
        self, call: Call[Any], *, read_timeout: float | None = None
    ) -> Iterator[httpx.Response]:
        """The response, its body not read yet; a failed call raises before it is yielded.

        ``read_timeout``: give up after that many seconds of silence, with
        ``httpx.ReadTimeout``."""
        options = call.options | reading_within(read_timeout)
        response: httpx.Response = self._send(call.method, call.path, stream=True, **options)
        try:
            _raise_for(response)
            yield response
        except httpx.ReadTimeout:
            raise
        except httpx.TransportError as exc:
            raise wire.connection_lost(self.data, exc) from None
        finally:
            response.close()

    def events(self, call: Call[T]) -> Iterator[T]:
        """The NDJSON events of a streaming call; an ``error`` event raises."""
        with self.stream(call) as response:
            for line in response.iter_lines():
                if (event := wire.parse_event(line)) is not None:
                    yield cast(T, event)

    # -- VMs -------------------------------------------------------------------------------------

    def list_vms(
        self, project: str | None = None, states: Sequence[str] = (), labels: Sequence[str] = ()
    ) -> list[VmInfo]:
        """Every VM the caller may see, or those of ``project``, in one of ``states``, and
        with every one of ``labels`` (``KEY=VALUE``, or ``KEY`` for any value).
        UserError for a state that does not exist."""
        return self.send(routes.list_vms(project, states, labels))

    def get_vm(self, name: str) -> VmInfo:
        return self.send(routes.get_vm(name))

    def create_vm(self, **spec: Any) -> VmInfo:
        """Create and boot a VM; ``spec`` is the daemon's ``VmCreate`` (name, image, cpus...)."""
        return self.send(routes.create_vm(spec))

    def start_vm(self, name: str) -> VmInfo:
        return self.send(routes.start_vm(name))

    def stop_vm(self, name: str, timeout: float = 30.0) -> VmInfo:
        """Shut the VM down, forcing it off after ``timeout`` seconds."""
        return self.send(routes.stop_vm(name, timeout))

    def wait_vm(
        self, name: str, until: str = "services", timeout: float = 600.0
    ) -> Iterator[WaitEvent]:
        """Wait for the running VM's services (systemd running or degraded): its progress
        events, then done; InvalidStateError with a sentence after ``timeout`` seconds."""
        return self.events(routes.wait_vm(name, until, timeout))

    def remove_vm(self, name: str) -> None:
        self.send(routes.remove_vm(name))

    def pause_vm(self, name: str) -> VmInfo:
        return self.send(routes.pause_vm(name))

    def resume_vm(self, name: str) -> VmInfo:
        return self.send(routes.resume_vm(name))

    def suspend_vm(self, name: str) -> VmInfo:
        return self.send(routes.suspend_vm(name))

    def set_limits(self, name: str, **limits: object) -> VmInfo:
        """Change the VM's limits (cpu_weight, cpu_cap, memory_limit, disk_*, net_bw)."""
        return self.send(routes.set_limits(name, limits))

    def connect_network(self, name: str, network: str, address: str | None = None) -> VmInfo:
        """Give the VM a NIC on ``network`` (at ``address``, else the next free one)."""
        return self.send(routes.connect_network(name, network, address))

    def disconnect_network(self, name: str, network: str) -> VmInfo:
        return self.send(routes.disconnect_network(name, network))

    def add_ssh_keys(self, name: str, keys: list[str]) -> VmInfo:
        """Give root in the VM these SSH public keys: recorded, and installed now if it runs."""
        return self.send(routes.add_ssh_keys(name, keys))

    def logs(self, name: str, tail: int = 0, firmware: bool = False) -> str:
        """The VM's serial console output (with ``firmware``, a pc VM's firmware debug log);
        its last ``tail`` lines when tail > 0."""
        return self.send(routes.logs(name, tail, firmware)) or ""

    def follow_logs(self, name: str, tail: int = 0, firmware: bool = False) -> Iterator[bytes]:
        """The console's last ``tail`` lines (all for 0), then its output as QEMU writes it,
        as bytes; the iteration ends when the VM's QEMU does (stopped, failed, suspended,
        removed). Leaving the loop early closes the stream."""
        with self.stream(routes.follow_logs(name, tail, firmware)) as response:
            yield from response.iter_bytes()

    # -- a pc VM's screen and keyboard -----------------------------------------------------------

    def screenshot(self, name: str) -> bytes:
        """What the pc VM's display shows now, as PNG bytes."""
        with self.stream(routes.screenshot(name)) as response:
            return response.read()

    def send_keys(self, name: str, keys: Sequence[str]) -> None:
        """Press each combination (``ret``, ``ctrl-alt-delete``: QEMU qcodes joined by -)."""
        self.send(routes.send_keys(name, keys))

    def type_text(self, name: str, text: str, layout: str = "us") -> None:
        """Type ``text`` (a newline is Enter) as a guest using ``layout`` reads it."""
        self.send(routes.type_text(name, text, layout))

    def dashboard(self) -> DashboardInfo:
        """The web dashboard's one-time login URL (opening its listener if it is closed)
        and its TLS fingerprint."""
        return self.send(routes.open_dashboard())

    def dashboard_token(self) -> str:
        """The admin's dashboard token."""
        return self.send(routes.dashboard_token())["token"]

    def open_vnc(self, name: str) -> VncInfo:
        """A one-time VNC endpoint on 127.0.0.1 and its password."""
        return self.send(routes.open_vnc(name))

    def eject_media(self, name: str) -> VmInfo:
        """Empty an installer VM's CD-ROM drive (live if it runs)."""
        return self.send(routes.eject_media(name))

    def insert_media(self, name: str, medium: str) -> VmInfo:
        """Put an ISO image (name or id) or ISO file (absolute path) in the VM's drive."""
        return self.send(routes.insert_media(name, medium))

    # -- sandboxes, leases, idleness -------------------------------------------------------------

    def create_sandbox(self, spec: Mapping[str, object]) -> VmInfo:
        return self.send(routes.create_sandbox(spec))

    def fork_vm(self, name: str, count: int) -> list[VmInfo]:
        """``count`` running copies of the VM ``name``, each a VM of its own."""
        return self.send(routes.fork_vm(name, count))

    def lease_vm(
        self, name: str, timeout: str | float | None, on_expiry: str | None = None
    ) -> VmInfo:
        """End the VM's lease ``timeout`` from now (a duration or seconds); None drops it."""
        return self.send(routes.lease_vm(name, timeout, on_expiry))

    def renew_lease(self, name: str, duration: str | float) -> VmInfo:
        """The VM's lease ends ``duration`` from now; refused if it has no lease."""
        return self.send(routes.renew_lease(name, duration))

    def set_idle(self, name: str, **policy: object) -> VmInfo:
        """Change the VM's own idle policy: after, action, cpu, disk, net."""
        return self.send(routes.set_idle(name, policy))

    # -- snapshots and clones --------------------------------------------------------------------

    def list_snapshots(self, vm: str) -> list[SnapshotInfo]:
        return self.send(routes.list_snapshots(vm))

    def create_snapshot(self, vm: str, name: str) -> SnapshotInfo:
        return self.send(routes.create_snapshot(vm, name))

    def restore_snapshot(self, vm: str, name: str) -> VmInfo:
        return self.send(routes.restore_snapshot(vm, name))

    def remove_snapshot(self, vm: str, name: str) -> None:
        self.send(routes.remove_snapshot(vm, name))

    def clone_vm(self, source: str, name: str, snapshot: str | None = None) -> VmInfo:
        """A new VM ``name`` running from ``source``'s snapshot, or from ``source`` as it is."""
        return self.send(routes.clone_vm(source, name, snapshot))

    # -- sprawl, deleted VMs, the audit log ------------------------------------------------------

    def sprawl(self) -> list[SprawlFinding]:
        return self.send(routes.sprawl())

    def apply_sprawl(self) -> list[SprawlOutcome]:
        return self.send(routes.apply_sprawl())

    def deleted_vms(self) -> list[DeletedVm]:
        return self.send(routes.deleted_vms())

    def restore_deleted(self, name: str) -> VmInfo:
        return self.send(routes.restore_deleted(name))

    def events_log(
        self, vm: str | None = None, since: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """The audit log, oldest first; ``since`` is a duration (``1h``) or a date."""
        return self.send(routes.events_log(vm, since, limit))

    # -- inside the guest ------------------------------------------------------------------------

    def exec_events(
        self, name: str, argv: list[str], *, stdin: bytes | None = None, **options: Any
    ) -> Generator[ExecEvent, None, None]:
        """Run ``argv`` in the VM; yields output events (bytes), then the exit event.

        ``options`` are the daemon's: env, cwd, user, timeout (seconds). With a
        timeout the call ends by then plus :data:`~bungalow.client.results.CLIENT_SLACK`
        whatever the daemon does: if it has not reported the end, the exit is a
        timeout of the client's (closing the connection makes bungalowd end it).
        """
        body = wire.exec_body(argv, stdin, options)
        deadline = ExecDeadline(options.get("timeout"))
        try:
            call = routes.exec_command(name, body)
            with self.stream(call, read_timeout=deadline.wait) as response:
                for line in response.iter_lines():
                    if (event := wire.parse_event(line)) is not None:
                        yield wire.decode_exec_event(event)
                        if event["type"] == "exit":
                            return
                    if deadline.passed():
                        break
        except httpx.ReadTimeout:
            pass
        else:
            if not deadline.passed():
                return  # the stream ended without an exit: the caller says so
        yield overdue_exit()

    def exec_interactive(
        self, name: str, argv: list[str], *, tty: bool = False, **options: Any
    ) -> ExecSession:
        """Start ``argv`` in the VM with its stdin open (and a terminal with ``tty``).

        ``options`` are env, cwd, user, timeout (seconds), rows and cols (the
        terminal's size). The session is a context manager; see
        :mod:`bungalow.client.interactive`.
        """
        from bungalow.client.interactive import ExecSession

        request = {"argv": argv, "tty": tty, "stdin": "", **options}
        path = routes.exec_socket(name)
        return ExecSession(self, path, request, what=f"an interactive command in {name}")

    def console(self, name: str) -> ConsoleSession:
        """Attach to the VM's serial console (raises first if there is no such VM)."""
        from bungalow.client.interactive import ConsoleSession

        self.get_vm(name)
        return ConsoleSession(self, routes.console_socket(name), what=f"the console of {name}")

    def stat(self, name: str, path: str, *, follow: bool = False) -> FileStatInfo:
        """What ``path`` is; a link itself unless ``follow``."""
        return self.send(routes.stat(name, path, follow))

    @contextmanager
    def download(
        self, name: str, path: str, *, follow: bool = False
    ) -> Iterator[wire.Download[Iterator[bytes]]]:
        """A file (its bytes and mode), a folder (a tar of its contents) or a link.

        A link is followed with ``follow``, and always when ``path`` ends in ``/``
        or ``/.``; see :class:`~bungalow.client.wire.Download`.
        """
        with self.stream(routes.download(name, path, follow)) as response:
            yield wire.download_of(response.headers, response.iter_bytes())

    def upload_file(self, name: str, path: str, chunks: Iterable[bytes], mode: int = 0o644) -> None:
        """Write the file ``path`` (``mode``: its permission bits), making missing folders."""
        self.send(routes.upload_file(name, path, chunks, mode))

    def upload_tar(self, name: str, dest: str, chunks: Iterable[bytes]) -> None:
        """Unpack a tar stream into the folder ``dest``."""
        self.send(routes.upload_tar(name, dest, chunks))

    # -- images and the host ---------------------------------------------------------------------

    def list_images(self) -> list[ImageInfo]:
        return self.send(routes.list_images())

    def get_image(self, ref: str) -> ImageInfo:
        return self.send(routes.get_image(ref))

    def recipes(self) -> list[str]:
        """Names of the images the daemon knows how to build."""
        return self.send(routes.recipes())

    def build_image(self, name: str, force: bool = False) -> Iterator[BuildEvent]:
        """Progress events of the build, then ``done`` with the image."""
        return self.events(routes.build_image(name, force))

    def import_image(
        self, path: Path, name: str, *, firmware: str = "bios", vars_file: Path | None = None
    ) -> ImageInfo:
        """Import the disk at ``path`` (read by the daemon, on its host), booted by
        ``firmware``, with ``vars_file`` as its UEFI variable store."""
        return self.send(routes.import_image(path, name, firmware=firmware, vars_file=vars_file))

    def remove_image(self, ref: str) -> None:
        self.send(routes.remove_image(ref))

    def host_info(self) -> HostInfo:
        return self.send(routes.host_info())

    # -- networks --------------------------------------------------------------------------------

    def create_network(self, name: str, subnet: str | None = None) -> NetworkInfo:
        """Make a private network; ``subnet`` (CIDR) or a free /24 picked by the daemon."""
        body: dict[str, object] = {"name": name}
        if subnet is not None:
            body["subnet"] = subnet
        return self.send(routes.create_network(body))

    def list_networks(self) -> list[NetworkInfo]:
        return self.send(routes.list_networks())

    def inspect_network(self, name: str) -> NetworkDetail:
        return self.send(routes.inspect_network(name))

    def remove_network(self, name: str) -> None:
        """Remove a network no VM has a NIC on."""
        self.send(routes.remove_network(name))

    # -- projects, costs, metrics ----------------------------------------------------------------

    def create_project(self, name: str, **quota: object) -> NewProject:
        """A new project and its token; ``quota``: max_vcpus, max_memory, max_disk, max_vms."""
        return self.send(routes.create_project({"name": name, **quota}))

    def list_projects(self) -> list[ProjectInfo]:
        return self.send(routes.list_projects())

    def update_project(self, name: str, **changes: object) -> ProjectInfo:
        """Change its quotas (max_*) and its VMs' default idle policy (idle_*, on_idle)."""
        return self.send(routes.update_project(name, changes))

    def remove_project(self, name: str, *, orphan_vms: bool = False) -> None:
        """Remove a project with no VMs, or keep its VMs as orphans."""
        self.send(routes.remove_project(name, orphan_vms))

    def costs(
        self, by: str = "vm", since: str | None = None, until: str | None = None
    ) -> CostReport:
        """Accrued cost grouped ``by`` vm, owner, project or ``label:KEY``, over the range."""
        return self.send(routes.costs(by, since, until))

    def metrics(self) -> list[VmMetrics]:
        """The latest sample and rates of every running VM the caller may see."""
        return self.send(routes.metrics())

    @property
    def socket_path(self) -> Path:
        return self.data.socket
