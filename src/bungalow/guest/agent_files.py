"""File operations for the host: stat, read a file out, write a file in.

A read runs in its own thread and sends at most one window ahead of the
host's acknowledgements, so a large file never sits in memory. A write is
applied by the reader thread as its chunks arrive (page-cache writes do not
block for long) into a temporary file that is renamed over the target only
when complete, so a reader in the guest never sees half a file.

This file runs inside the guest (Python 3.9+, standard library only).
"""

from __future__ import annotations

import contextlib
import os
import stat as st
import threading

if __package__:  # imported as bungalow.guest.* on the host
    from . import protocol
else:  # in the guest: a sibling file, not a package
    import protocol  # type: ignore[no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Send = Callable[[dict[str, Any]], None]


class FileRefused(Exception):
    """A file operation failed; becomes an error event with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def refusal(exc: OSError, path: str, doing: str) -> FileRefused:
    """The one-sentence error for an OSError met while ``doing`` ``path``."""
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return FileRefused(protocol.ERR_NOT_FOUND, f"The file {path} does not exist in the guest.")
    if isinstance(exc, PermissionError):
        return FileRefused(
            protocol.ERR_PERMISSION, f"The guest refused {doing} {path}: {exc.strerror}."
        )
    if isinstance(exc, IsADirectoryError):
        return FileRefused(protocol.ERR_INVALID, f"{path} is a directory in the guest, not a file.")
    return FileRefused(protocol.ERR_FAILED, f"{doing.capitalize()} {path} failed: {exc.strerror}.")


def checked_path(message: dict[str, Any]) -> str:
    path = message.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise FileRefused(protocol.ERR_INVALID, f"The path {path!r} is not an absolute path.")
    return path


def stat_reply(message: dict[str, Any]) -> dict[str, Any]:
    """The answer to a stat request: the link itself unless ``follow`` is true.

    A link's reply carries its ``target``; an ``other`` one says in ``special``
    what it is (character device, block device, FIFO, socket). A folder's says
    which file system it is on (``fs``, the kernel's name: ext4, proc...) and
    lists the mounts below it (``mounts``: [path relative to it, fs] pairs).
    """
    path = checked_path(message)
    try:
        info = os.stat(path) if message.get("follow") else os.lstat(path)
    except OSError as exc:
        raise refusal(exc, path, "looking at") from None
    fields: dict[str, Any] = {
        "kind": kind_of(info.st_mode),
        "size": info.st_size,
        "mode": st.S_IMODE(info.st_mode),
        "mtime": info.st_mtime,
    }
    if fields["kind"] == protocol.KIND_LINK:
        try:
            fields["target"] = os.readlink(path)
        except OSError as exc:
            raise refusal(exc, path, "looking at") from None
    elif fields["kind"] == protocol.KIND_OTHER:
        fields["special"] = special_name(info.st_mode)
    elif fields["kind"] == protocol.KIND_DIR:
        fields["fs"], fields["mounts"] = mounts_at(os.path.realpath(path))
    return protocol.event(protocol.EV_STAT, message["id"], **fields)


def mounts_at(folder: str) -> tuple[str, list[list[str]]]:
    """The file system ``folder`` is on, and the mounts below it (relative path, fs)."""
    fs, best = "", -1
    below: list[list[str]] = []
    prefix = folder.rstrip("/") + "/"
    try:
        with open("/proc/self/mountinfo") as table:
            lines = table.read().splitlines()
    except OSError:
        return fs, below
    for line in lines:
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        point = _unescape(fields[4])
        kind = fields[fields.index("-", 6) + 1]
        if point.startswith(prefix) and point != prefix:
            below.append([point[len(prefix) :], kind])
        if (point == folder or folder.startswith(point.rstrip("/") + "/")) and len(point) > best:
            fs, best = kind, len(point)
    return fs, below


def _unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes."""
    if "\\" not in field:
        return field
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def kind_of(mode: int) -> str:
    if st.S_ISREG(mode):
        return protocol.KIND_FILE
    if st.S_ISDIR(mode):
        return protocol.KIND_DIR
    if st.S_ISLNK(mode):
        return protocol.KIND_LINK
    return protocol.KIND_OTHER


def special_name(mode: int) -> str:
    """What a file that is neither a regular file, a folder nor a link is, in words."""
    tests = (st.S_ISCHR(mode), st.S_ISBLK(mode), st.S_ISFIFO(mode), st.S_ISSOCK(mode))
    for index, found in enumerate(tests):
        if found:
            return protocol.SPECIAL_NAMES[index]
    return "special file"


class Download:
    """A read_file stream: data events, at most one window ahead, then eof."""

    def __init__(self, message: dict[str, Any], send: Send, forget: Callable[[int], None]):
        self.id: int = message["id"]
        self._path = checked_path(message)
        self._send = send
        self._forget = forget
        self._credit = threading.Condition()
        self._unacked = 0
        self._cancelled = False

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"read-{self.id}", daemon=True).start()

    def handle(self, message: dict[str, Any]) -> None:
        if message.get("op") == protocol.OP_ACK:
            with self._credit:
                self._unacked -= int(message.get("bytes", 0))
                self._credit.notify()

    def cancel(self) -> None:
        with self._credit:
            self._cancelled = True
            self._credit.notify()

    def _open(self) -> int:
        """Open a regular file (or a /proc or /sys one) for reading; refuse anything else.

        Devices, FIFOs and sockets are refused before they are opened, since opening
        one can block or act (a tape rewinds); O_NONBLOCK covers one put there since.
        """
        self._refuse_special(os.stat(self._path).st_mode)
        fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            self._refuse_special(os.fstat(fd).st_mode)
        except FileRefused:
            os.close(fd)
            raise
        os.set_blocking(fd, True)
        return fd

    def _refuse_special(self, mode: int) -> None:
        if st.S_ISDIR(mode):
            raise FileRefused(protocol.ERR_INVALID, f"{self._path} is a directory in the guest.")
        if not st.S_ISREG(mode):
            what = special_name(mode)
            raise FileRefused(
                protocol.ERR_INVALID,
                f"{self._path} is a {what} in the guest; only regular files can be read.",
            )

    def _run(self) -> None:
        try:
            try:
                fd = self._open()
            except OSError as exc:
                raise refusal(exc, self._path, "reading") from None
            try:
                self._stream(fd)
            except OSError as exc:  # what the file gives (a /sys file may refuse reads)
                raise FileRefused(
                    protocol.ERR_INVALID,
                    f"Reading {self._path} in the guest failed: {exc.strerror}.",
                ) from None
            finally:
                os.close(fd)
        except FileRefused as exc:
            self._send(protocol.error(self.id, exc.code, exc.message))
        finally:
            self._forget(self.id)

    def _stream(self, fd: int) -> None:
        while True:
            with self._credit:
                while self._unacked >= protocol.WINDOW and not self._cancelled:
                    self._credit.wait()
                if self._cancelled:
                    return
                room = protocol.WINDOW - self._unacked
            data = os.read(fd, min(room, protocol.MAX_CHUNK))
            if not data:
                self._send(protocol.event(protocol.EV_EOF, self.id))
                return
            with self._credit:
                self._unacked += len(data)
            self._send(protocol.event(protocol.EV_DATA, self.id, data=protocol.encode_data(data)))


class Upload:
    """A write_file stream: data chunks into a temporary file, renamed on close."""

    def __init__(self, message: dict[str, Any], send: Send, forget: Callable[[int], None]):
        self.id: int = message["id"]
        self._path = checked_path(message)
        self._send = send
        self._forget = forget
        mode = message.get("mode", 0o644)
        if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise FileRefused(protocol.ERR_INVALID, f"The file mode {mode!r} is not valid.")
        self._mode = mode
        self._mkdirs = bool(message.get("mkdirs", True))
        directory, name = os.path.split(self._path)
        self._temp = os.path.join(directory, f".{name}.bungalow-{os.getpid()}-{self.id}")
        self._fd = -1

    def start(self) -> None:
        """Create the temporary file; refusals go back to the host as an error."""
        try:
            if os.path.isdir(self._path):
                raise IsADirectoryError(21, "Is a directory")
            if self._mkdirs:
                os.makedirs(os.path.dirname(self._path), exist_ok=True)
            self._fd = os.open(
                self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
            os.fchmod(self._fd, self._mode)
        except OSError as exc:
            self._fail(refusal(exc, self._path, "writing"))

    def handle(self, message: dict[str, Any]) -> None:
        if self._fd < 0:
            return
        op = message.get("op")
        try:
            if op == protocol.OP_DATA:
                data = protocol.decode_data(message)
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                self._send(protocol.event(protocol.EV_ACK, self.id, bytes=len(data)))
            elif op == protocol.OP_CLOSE:
                fd, self._fd = self._fd, -1
                os.close(fd)
                os.rename(self._temp, self._path)
                self._forget(self.id)
                self._send(protocol.event(protocol.EV_DONE, self.id))
        except OSError as exc:
            self._fail(refusal(exc, self._path, "writing"))

    def cancel(self) -> None:
        self._discard()

    def _fail(self, exc: FileRefused) -> None:
        self._discard()
        self._send(protocol.error(self.id, exc.code, exc.message))

    def _discard(self) -> None:
        self._forget(self.id)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self._temp)
