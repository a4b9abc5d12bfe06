"""The wire format between the host and the guest agent.

One byte stream (a virtio-serial port in the guest, QEMU's chardev Unix socket
on the host) carries newline-delimited JSON objects in both directions. This
module is shared verbatim by both ends, so it runs on the guest's Python
(3.9 and later) with the standard library only and imports almost nothing:
under TCG every imported module costs guest boot time.

Requests go from the host to the guest and name an ``op``; everything the
guest sends names a ``type``. Every request carries an integer ``id`` chosen
by the host, and every reply or stream event carries the id it answers, so
many execs and transfers share the one stream. Binary data travels base64 in
a ``data`` field, at most :data:`MAX_CHUNK` raw bytes per message.

Flow control is per stream and credit based, like SSH channels: a sender may
have at most :data:`WINDOW` bytes of one stream's data unacknowledged, and the
receiver sends ``ack`` with the byte count once it has handed data on (to the
consumer on the host; to the process or file in the guest). Neither side ever
holds more than one window per stream in memory, and one slow stream does not
stall the others the way blocking the shared socket would.

Requests and their answers::

    hello                              -> pong; sent by a new host: the agent ends
                                          every exec and transfer of earlier hosts
    ping                               -> pong {version, protocol, uptime, python}
    exec {argv, env, cwd, user, timeout, kill_grace, tty, rows, cols, stdin}
                                       -> started {pid}, stdout/stderr {data}...,
                                          exit {code, signal, timed_out}
    stdin {data} | stdin_close | signal {sig} | resize {rows, cols}
    stat {path, follow}                -> stat {kind, size, mode, mtime}, and a link's
                                          target, a special file's kind (special), a
                                          folder's file system (fs) and mounts below it
    read_file {path}                   -> data {data}..., eof
    write_file {path, mode, mkdirs}, data {data}..., close -> done
    ack {bytes}                        (both ways: credit for one stream)
    cancel                             (host gave up: kill the exec, drop the transfer)
    shutdown                           -> ok, then the guest powers off
    sync {time, hostname, machine_id, entropy, mac}
                                       -> ok {changed}; sets the clock and identity

Any request may instead be answered with ``error {code, message}``, and every
request is answered: one the agent cannot take (a line longer than
:data:`MAX_LINE`, which it cannot even parse) gets an error too, found by the
id that :func:`request` puts at the head of every line.
"""

from __future__ import annotations

import binascii

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs guest start time; the annotations are strings
    from collections.abc import Callable, Iterator
    from typing import Any

#: Bumped whenever a change would confuse an older peer; compared on connect.
PROTOCOL_VERSION = 1
AGENT_VERSION = "0.1.0"

#: The virtio-serial port name QEMU gives the agent's port (``virtserialport name=``).
PORT_NAME = "org.bungalow.agent"
#: The line the agent writes to the guest console once it listens on its port.
READY_LINE = "bungalow-agent: ready"

#: Raw bytes per data message; base64 makes a line of about 87 KiB from it.
MAX_CHUNK = 64 * 1024
#: Unacknowledged raw bytes one stream may have in flight in one direction.
WINDOW = 4 * MAX_CHUNK
#: A receiver acknowledges once it has handed on this much (or at the end).
ACK_THRESHOLD = MAX_CHUNK
#: Longest line either side accepts. The agent answers a longer request with an error
#: (the host refuses to send one); it holds a guest's whole ARG_MAX (2 MiB) of arguments.
MAX_LINE = 4 * 1024 * 1024
#: Seconds between the first signal and SIGKILL when a command times out or is cancelled.
KILL_GRACE = 2.0
#: What a guest's kernel takes at most in one execve, arguments and environment together
#: (ARG_MAX: a quarter of the default 8 MiB stack limit); checked before an exec is sent.
MAX_EXEC_ARGS = 2 * 1024 * 1024
#: The longest single argument or environment entry a guest's kernel takes (MAX_ARG_STRLEN).
MAX_EXEC_ARG = 128 * 1024

# Requests (host -> guest), the "op" field.
OP_HELLO = "hello"
OP_PING = "ping"
OP_EXEC = "exec"
OP_STDIN = "stdin"
OP_STDIN_CLOSE = "stdin_close"
OP_SIGNAL = "signal"
OP_RESIZE = "resize"
OP_STAT = "stat"
OP_READ_FILE = "read_file"
OP_WRITE_FILE = "write_file"
OP_DATA = "data"
OP_CLOSE = "close"
OP_ACK = "ack"
OP_CANCEL = "cancel"
OP_SHUTDOWN = "shutdown"
OP_SYNC = "sync"

# Replies and events (guest -> host), the "type" field.
EV_PONG = "pong"
EV_STARTED = "started"
EV_STDOUT = "stdout"
EV_STDERR = "stderr"
EV_EXIT = "exit"
EV_STAT = "stat"
EV_DATA = "data"
EV_EOF = "eof"
EV_DONE = "done"
EV_OK = "ok"
EV_ACK = "ack"
EV_ERROR = "error"

# Error codes in an error event.
ERR_NOT_FOUND = "not_found"
ERR_PERMISSION = "permission"
ERR_INVALID = "invalid"
ERR_FAILED = "failed"

# File kinds in a stat reply; an "other" one says which in "special" (SPECIAL_NAMES).
KIND_FILE = "file"
KIND_DIR = "dir"
KIND_LINK = "link"
KIND_OTHER = "other"
SPECIAL_NAMES = ("character device", "block device", "FIFO", "socket")
#: File systems whose files' sizes say nothing of what reading them gives (the kernel's
#: names): a folder on one cannot be archived, and is left out of a folder around it.
PSEUDO_FS = frozenset(
    {"proc", "sysfs", "debugfs", "tracefs", "securityfs", "cgroup", "cgroup2", "configfs",
     "pstore", "bpf", "efivarfs", "binfmt_misc", "fusectl", "mqueue", "rpc_pipefs", "nsfs"}
)  # fmt: skip

#: Exit codes a shell uses when it cannot run a command; the agent does the same.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


class ProtocolError(ValueError):
    """A line that is not a protocol message; the receiver skips it."""


def _c_codec() -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    """JSON straight from the C accelerator the json package itself uses.

    ``import json`` compiles a dozen regular expressions and costs more CPU
    than starting the interpreter; ``_json`` costs nothing. Its entry points
    are private, so a self-test guards them and any surprise falls back.
    """
    import _json

    class _Options:  # the attributes the C scanner reads from a JSONDecoder
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int

        @staticmethod
        def parse_constant(name: str) -> Any:
            raise ProtocolError(f"{name} is not a number this protocol sends")

    def refuse(value: object) -> Any:
        raise TypeError(f"{type(value).__name__} cannot be sent")

    scan = _json.make_scanner(_Options)  # type: ignore[arg-type]  # duck-typed context
    chunks = _json.make_encoder(  # markers, default, encoder, indent, separators, flags
        None, refuse, _json.encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def dumps(message: Any) -> str:
        return "".join(chunks(message, 0))

    def loads(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration:
            raise ProtocolError("not a JSON value") from None
        if end != len(text) and text[end:].strip():
            raise ProtocolError("text after the JSON value")
        return value

    sample = {"id": 7, "op": "x", "n": [1, 2.5, True, None], "s": "\u00e9\n"}
    if dumps(sample) != _SAMPLE_TEXT or loads(_SAMPLE_TEXT) != sample:
        raise ImportError("_json does not behave as expected")
    return dumps, loads


def _py_codec() -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    import json

    return json.JSONEncoder(separators=(",", ":")).encode, json.JSONDecoder().decode


_SAMPLE_TEXT = '{"id":7,"op":"x","n":[1,2.5,true,null],"s":"\\u00e9\\n"}'
try:
    _dumps, _loads = _c_codec()
except Exception:  # another Python: use the public, slower-to-import module
    _dumps, _loads = _py_codec()


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line, ready to write."""
    return _dumps(message).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """The message in ``line`` (with or without its newline); ProtocolError for anything else.

    Garbage is expected now and then: a host that reconnects may see the tail
    of a line written to its predecessor, so callers skip bad lines.
    """
    try:
        message = _loads(line.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON line: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("id"), int):
        raise ProtocolError("a message must be a JSON object with an integer id")
    return message


def encode_data(data: bytes) -> str:
    """Bytes as the text of a ``data`` field."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def decode_data(message: dict[str, Any]) -> bytes:
    """The bytes in a message's ``data`` field (empty when it has none)."""
    text = message.get("data")
    if not text:
        return b""
    try:
        return binascii.a2b_base64(text)
    except (binascii.Error, TypeError) as exc:
        raise ProtocolError(f"the data field is not base64: {exc}") from None


def request(op: str, request_id: int, /, **fields: Any) -> dict[str, Any]:
    """A host -> guest message; ``op`` and ``id`` come first on the line (see head_id)."""
    return {"op": op, "id": request_id, **fields}


def head_id(head: bytes) -> int | None:
    """The request id near the start of a line too long to parse, if it is there."""
    marker = head.find(b'"id":')
    if marker < 0:
        return None
    digits = head[marker + 5 : marker + 30].split(b",", 1)[0].split(b"}", 1)[0].strip()
    return int(digits) if digits.isdigit() else None


def event(kind: str, request_id: int, /, **fields: Any) -> dict[str, Any]:
    """A guest -> host message."""
    fields["type"] = kind
    fields["id"] = request_id
    return fields


def error(request_id: int, code: str, message: str) -> dict[str, Any]:
    """An error answer: ``code`` is one of the ERR_ constants, ``message`` one sentence."""
    return {"type": EV_ERROR, "id": request_id, "code": code, "message": message}


def chunks(data: bytes, size: int = MAX_CHUNK) -> Iterator[bytes]:
    """``data`` cut into pieces that each fit one data message."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield bytes(view[start : start + size])
