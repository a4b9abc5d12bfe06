"""The agent server: reads the port, dispatches requests, answers the host.

Inside a VM the agent is started as ``python3 -S /run/bungalow/agent.py --init``
and is PID 1 (see agent_init.py); its server child finds the virtio-serial
port named :data:`protocol.PORT_NAME` and speaks :mod:`protocol` over it.
In a server image systemd is PID 1 and starts ``agent.py --systemd`` as
``bungalow-agent.service`` (images/server.py): the same server, which grows the
root file system itself and powers off by asking systemd.
For tests it runs as an ordinary process: ``--listen-unix PATH`` makes it
listen on a Unix socket the way QEMU's chardev does, so the host side
connects unchanged.

The main thread reads the port and dispatches; execs and file reads run in
threads of their own; every write to the port goes through one lock. The
port outlives its host: when the host (bungalowd, through QEMU) goes away,
every running exec and transfer is ended, and the agent waits for the next
host -- a restarted daemon reconnects to the same agent.

Only the standard library, Python 3.9+, and few imports before the first
answer: under TCG every module costs guest time. ``threading`` (and what an
exec needs) is imported in the background after the first pong; until then
the low-level ``_thread`` serves.
"""

from __future__ import annotations

import _thread
import os
import select
import sys
import time

if __package__:  # imported as bungalow.guest.* on the host
    from . import protocol
else:  # in the guest: sibling files in one directory (agent.py set sys.path)
    import protocol  # type: ignore[no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any, Protocol

    class Session(Protocol):
        id: int

        def start(self) -> None: ...

        def handle(self, message: dict[str, Any]) -> None: ...

        def cancel(self) -> None: ...


USAGE = "usage: agent.py [--init | --systemd] [--port DEVICE | --listen-unix PATH] [--console PATH]"
VIRTIO_PORTS = "/sys/class/virtio-ports"
#: How often to look again while no host is connected: the port then reports
#: POLLHUP at once, so poll() cannot wait for a host to arrive.
NO_HOST_RECHECK = 0.02
_READ_SIZE = 256 * 1024


def _exec_module() -> ModuleType:
    if __package__:
        from . import agent_exec
    else:
        import agent_exec  # type: ignore[no-redef]
    return agent_exec


def _identity_module() -> ModuleType:
    if __package__:
        from . import agent_identity
    else:
        import agent_identity  # type: ignore[no-redef]
    return agent_identity


def _files_module() -> ModuleType:
    if __package__:
        from . import agent_files
    else:
        import agent_files  # type: ignore[no-redef]
    return agent_files


def _poll(fd: int, events: int, timeout_ms: int | None = None) -> int:
    poller = select.poll()
    poller.register(fd, events)
    return sum(mask for _, mask in poller.poll(timeout_ms))


class PortLink:
    """A character device: the guest's virtio-serial port, always open."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.fd = -1

    def open(self) -> None:
        tries = 0
        while self.path is None:
            self.path = _find_port()
            if self.path is None:
                tries += 1
                if tries == 50:  # five seconds: the driver should long be there
                    _log(f"still looking for the virtio port {protocol.PORT_NAME}")
                time.sleep(0.1)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)

    def wait_connection(self) -> int:
        """Return once a host is there, which the port shows only by having data."""
        while not _poll(self.fd, select.POLLIN) & select.POLLIN:
            time.sleep(NO_HOST_RECHECK)
        return self.fd

    def lost(self, fd: int) -> None:
        """The port stays open; the next host connects to the same device."""


class ListenLink:
    """A listening Unix socket, one host at a time, as QEMU's chardev socket serves."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self) -> None:
        import socket

        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def wait_connection(self) -> int:
        self.conn, _ = self.sock.accept()
        self.conn.setblocking(False)
        return self.conn.fileno()

    def lost(self, fd: int) -> None:
        self.conn.close()


def _find_port() -> str | None:
    try:
        entries = os.listdir(VIRTIO_PORTS)
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(VIRTIO_PORTS, entry, "name")) as name:
                if name.read().strip() == protocol.PORT_NAME:
                    return "/dev/" + entry
        except OSError:
            continue
    return None


def _log(text: str) -> None:
    try:  # noqa: SIM105 - contextlib would cost start time
        os.write(2, f"bungalow-agent: {text}\n".encode())
    except OSError:
        pass


class Server:
    """Reads requests from one host after another and answers them."""

    def __init__(self, link: PortLink | ListenLink, on_shutdown: Callable[[], None]) -> None:
        self.link = link
        self._on_shutdown = on_shutdown
        self._write_lock = _thread.allocate_lock()
        self._fd: int | None = None  # the connection writes go to; None between hosts
        self._generation = 0  # counts hosts, so a session never writes to a later one
        self._sessions: dict[int, Session] = {}
        self._warm = False

    def serve_forever(self) -> int:
        while True:
            fd = self.link.wait_connection()
            with self._write_lock:
                self._generation += 1
                self._fd = fd
            try:
                self._read_until_lost(fd)
            finally:
                with self._write_lock:
                    self._fd = None
                self._end_sessions()
                self.link.lost(fd)

    def _new_host(self) -> None:
        """A host said hello: whatever an earlier one started is nobody's now.

        A host that leaves and another that arrives quickly can toggle the
        virtio port's connection state faster than poll() shows it, so the
        agent may never see a disconnect; the hello is the reliable signal.
        """
        with self._write_lock:
            self._generation += 1
        self._end_sessions()

    def _end_sessions(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            session.cancel()

    def _read_until_lost(self, fd: int) -> None:
        pending = bytearray()
        skipping = False  # inside a line too long to take, until its newline
        while True:
            revents = _poll(fd, select.POLLIN)
            try:
                data = os.read(fd, _READ_SIZE) if revents & select.POLLIN else b""
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                return  # the host went away (EOF, POLLHUP)
            start = 0
            while (end := data.find(b"\n", start)) >= 0:
                if skipping:
                    skipping = False
                elif len(pending) + end - start > protocol.MAX_LINE:
                    self._refuse_long_line(bytes((pending or data[start:end])[:256]))
                else:
                    pending += data[start:end]
                    self._take_line(bytes(pending))
                del pending[:]
                start = end + 1
            if not skipping:
                pending += data[start:]
                if len(pending) > protocol.MAX_LINE:
                    self._refuse_long_line(bytes(pending[:256]))
                    skipping = True
                    del pending[:]

    def _take_line(self, line: bytes) -> None:
        try:
            message = protocol.decode(line)
        except protocol.ProtocolError:
            return  # e.g. the tail of a line a previous host was writing
        self._dispatch(message)

    def _refuse_long_line(self, head: bytes) -> None:
        """Answer a request too long to read, so that its host does not wait for ever."""
        request_id = protocol.head_id(head)
        if request_id is None:
            return  # not a request of ours
        limit = protocol.MAX_LINE // (1024 * 1024)
        text = (
            f"The request is longer than the {limit} MiB the guest agent takes in one message; "
            "pass large data on stdin or as a file instead."
        )
        self.sender()(protocol.error(request_id, protocol.ERR_INVALID, text))

    def sender(self) -> Callable[[dict[str, Any]], None]:
        """A send function bound to the current host: after it leaves, sends are dropped."""
        generation = self._generation

        def send(message: dict[str, Any]) -> None:
            self._send(message, generation)

        return send

    def _send(self, message: dict[str, Any], generation: int) -> None:
        view = memoryview(protocol.encode(message))
        with self._write_lock:
            fd = self._fd
            if fd is None or generation != self._generation:
                return
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    if not _poll(fd, select.POLLOUT) & select.POLLOUT:
                        return  # no host (POLLHUP): drop, the reader notices too
                except OSError:
                    return

    def _forget(self, request_id: int) -> None:
        self._sessions.pop(request_id, None)

    def _dispatch(self, message: dict[str, Any]) -> None:
        request_id, op = message["id"], message.get("op")
        send = self.sender()
        session = self._sessions.get(request_id)
        try:
            if session is not None:
                if op == protocol.OP_CANCEL:
                    self._forget(request_id)
                    session.cancel()
                else:
                    session.handle(message)
            elif op in (protocol.OP_HELLO, protocol.OP_PING):
                if op == protocol.OP_HELLO:
                    self._new_host()
                    send = self.sender()
                send(protocol.event(protocol.EV_PONG, request_id, **_pong_fields()))
                if not self._warm:  # after the first answer, so the import does not delay it
                    self._warm = True
                    _thread.start_new_thread(_warm_up, ())
            elif op in (protocol.OP_EXEC, protocol.OP_READ_FILE, protocol.OP_WRITE_FILE):
                self._start_session(message, send)
            elif op == protocol.OP_STAT:
                send(_files_module().stat_reply(message))
            elif op == protocol.OP_SYNC:
                changed = _identity_module().sync(message)
                send(protocol.event(protocol.EV_OK, request_id, changed=changed))
            elif op == protocol.OP_SHUTDOWN:
                os.sync()
                send(protocol.event(protocol.EV_OK, request_id))
                self._on_shutdown()
            elif op not in _SESSION_OPS:  # late messages for a finished session are normal
                text = f"The guest agent does not know the operation {op!r}; update the image."
                send(protocol.error(request_id, protocol.ERR_INVALID, text))
        except Exception as exc:
            code = getattr(exc, "code", protocol.ERR_FAILED)
            text = getattr(exc, "message", None) or f"The guest agent failed: {exc!r}."
            send(protocol.error(request_id, code, text))

    def _start_session(
        self, message: dict[str, Any], send: Callable[[dict[str, Any]], None]
    ) -> None:
        op = message["op"]
        session: Session
        if op == protocol.OP_EXEC:
            session = _exec_module().ExecSession(message, send, self._forget)
        elif op == protocol.OP_READ_FILE:
            session = _files_module().Download(message, send, self._forget)
        else:
            session = _files_module().Upload(message, send, self._forget)
        self._sessions[session.id] = session
        session.start()


_SESSION_OPS = {
    protocol.OP_STDIN,
    protocol.OP_STDIN_CLOSE,
    protocol.OP_SIGNAL,
    protocol.OP_RESIZE,
    protocol.OP_DATA,
    protocol.OP_CLOSE,
    protocol.OP_ACK,
    protocol.OP_CANCEL,
}


def _pong_fields() -> dict[str, Any]:
    try:
        with open("/proc/uptime") as uptime:
            seconds = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        seconds = 0.0
    python = ".".join(str(part) for part in sys.version_info[:3])
    version, number = protocol.AGENT_VERSION, protocol.PROTOCOL_VERSION
    return {"version": version, "protocol": number, "uptime": seconds, "python": python}


def _announce_ready(console: str | None) -> None:
    line = (protocol.READY_LINE + "\n").encode()
    try:
        if console is None:
            os.write(2, line)
            return
        fd = os.open(console, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        _log(f"cannot write to the console {console}: {exc.strerror}")


def _warm_up() -> None:
    """Import what the first exec needs while the host is still connecting.

    A snapshot keeps these imports, so VMs started from it pay for none of them.
    """
    _exec_module()
    _files_module()
    _identity_module()


class Options:
    init = False
    systemd = False
    port: str | None = None
    listen_unix: str | None = None
    console: str | None = None


def parse_args(argv: list[str]) -> Options:
    """The few flags, parsed by hand: argparse alone costs a TCG guest tens of ms."""
    options = Options()
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag == "--init":
            options.init = True
        elif flag == "--systemd":
            options.systemd = True
        elif flag in ("--port", "--listen-unix", "--console") and args:
            setattr(options, flag[2:].replace("-", "_"), args.pop(0))
        else:
            sys.exit(f"bungalow-agent: unknown argument {flag!r}\n{USAGE}")
    if options.port and options.listen_unix:
        sys.exit("bungalow-agent: give --port or --listen-unix, not both.")
    if options.init and options.systemd:
        sys.exit("bungalow-agent: give --init or --systemd, not both.")
    if options.console is None and options.listen_unix is None and options.port is None:
        options.console = "/dev/console"
    return options


def serve(options: Options, init_mode: bool) -> int:
    """Open the link, announce readiness and serve hosts until shut down."""
    link: PortLink | ListenLink
    link = ListenLink(options.listen_unix) if options.listen_unix else PortLink(options.port)
    link.open()
    _announce_ready(options.console)

    def on_shutdown() -> None:
        if init_mode:
            os.kill(1, 15)  # PID 1 ends everything, syncs and powers off
        elif options.systemd:
            import signal

            # systemd's own "poweroff" signal: a clean shutdown, units stopped in order.
            os.kill(1, signal.SIGRTMIN + 4)
        elif options.port is None and options.listen_unix is None:
            # A guest booted with another init (systemd): ask it to power off.
            os.posix_spawnp("poweroff", ["poweroff"], dict(os.environ))
        else:  # a port or socket named by hand, as in tests: only this process ends
            if isinstance(link, ListenLink):
                os.unlink(link.path)
            os._exit(0)

    return Server(link, on_shutdown).serve_forever()


def main(argv: list[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    if options.init:
        if __package__:
            from . import agent_init
        else:
            import agent_init  # type: ignore[no-redef]
        agent_init.run(lambda: serve(options, init_mode=True))
        return 0
    if options.systemd:
        _grow_root_in_background()
    return serve(options, init_mode=False)


def _grow_root_in_background() -> None:
    """Under systemd, grow the root file system to the disk as PID 1 would (agent_init.py)."""
    if __package__:
        from . import agent_init
    else:
        import agent_init  # type: ignore[no-redef]

    def grow() -> None:
        pid = agent_init.grow_root()
        if pid is not None:
            _, status = os.waitpid(pid, 0)
            if status != 0:
                _log(f"growing the root file system failed (wait status {status})")

    _thread.start_new_thread(grow, ())
