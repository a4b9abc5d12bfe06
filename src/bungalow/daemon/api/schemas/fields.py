"""The values request bodies are made of: each with its bounds, pattern or choices.

One definition gives both what ``/openapi.json`` shows a client (ranges,
patterns, enums) and what the daemon enforces. A value outside it is refused
with the words of its rule ("give a whole number from 1 to 255"), which app.py
makes into one sentence naming the field and the value given: a 400, before any
service is called. Nothing is coerced: a boolean is not a number, a number is
not a boolean, ``"2"`` is not a count; a whole number may be written ``3.0``,
as JSON Schema's ``integer`` allows. Where users type text for a number (sizes
such as ``512M``, durations such as ``2h``) the text is accepted too, in ASCII
and as the pattern shown says (the parsers of :mod:`bungalow.units` read a
little more); the value reaches the route as it was given, and the services
parse it as before.

The bounds are there so that no number reaches SQLite, QEMU or the clock out
of range: sizes at most 1024T (:data:`MAX_SIZE`), durations at most 100 years
(``units.LONGEST_DURATION``), counts and lists bounded where they are made.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator
from pydantic_core import PydanticCustomError

from bungalow.daemon.policies.settings import ACTIONS, Action
from bungalow.daemon.vms.nics import NetworkChoice
from bungalow.daemon.vms.plan import ACCELS, PROFILES
from bungalow.errors import BungalowError, InvalidNameError, UserError
from bungalow.guest.protocol import MAX_EXEC_ARG
from bungalow.names import (
    LABEL_KEY_PATTERN,
    LABEL_KEY_RULE,
    LABEL_VALUE_PATTERN,
    LABEL_VALUE_RULE,
    MAX_LABELS,
    NAME_PATTERN,
    NAME_RULE,
    OWNER_PATTERN,
    OWNER_RULE,
    matches,
)
from bungalow.provision.sshkeys import MAX_KEY_LENGTH, MAX_KEYS
from bungalow.provision.userdata import MAX_USER_DATA
from bungalow.qemu.argv import PortForward
from bungalow.qemu.firmware import FIRMWARES
from bungalow.units import LONGEST_DURATION, format_size, parse_duration, parse_size

#: The largest size the API takes: 1024T, more than any host holds, far inside 64 bits.
MAX_SIZE = 1 << 50
#: A size as text: bytes, or a number with K, M, G or T (powers of 1024), B or iB optional.
SIZE_PATTERN = r"^ *[0-9]+(\.[0-9]+)? *[kmgtKMGT]?(i?[bB])? *$"
#: A duration above 0 as text: seconds, or a number with ms, s, m, h, d or w.
DURATION_PATTERN = r"^ *(0*[1-9][0-9]*(\.[0-9]+)?|0+\.0*[1-9][0-9]*) *(ms|s|m|h|d|w)? *$"
#: A moment (``units.parse_moment``), as a query parameter's description.
MOMENT = "now, a duration before now (2h, 7d, 1w) or an ISO 8601 date such as 2026-11-01T09:30"
#: How costs are grouped (``accounting.costs.parse_grouping``).
GROUPING_PATTERN = "^(vm|owner|project|label:" + LABEL_KEY_PATTERN.strip("^$") + ")$"
#: QEMU's pc machine takes at most 255 vCPUs.
MAX_CPUS = 255
#: Disk and network rates: QEMU's block throttling takes at most 10**15 a second.
MAX_RATE = 1 << 49
#: A decimal number as text (``0.5``, ``2000``), as the CLI passes what was typed.
DECIMAL_PATTERN = r"^ *[0-9]+(\.[0-9]+)? *$"
WHOLE_PATTERN = r"^ *[0-9]{1,12} *$"
#: Text that carries no NUL (the kernel's strings end at one).
TEXT_PATTERN = r"^[^\x00]*$"
_BASE64_PATTERN = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: An image by name, or by the first 4 or more hex digits of its id (images/store.py).
_IMAGE_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-f]{4,64})$"
IPV4_PATTERN = r"^([0-9]{1,3}\.){3}[0-9]{1,3}$"
_NETWORK_PATTERN = NAME_PATTERN[:-1] + "(:" + IPV4_PATTERN[1:-1] + ")?$"
_PORT_PATTERN = r"^(([0-9]{1,3}\.){3}[0-9]{1,3}:)?[0-9]{1,5}:[0-9]{1,5}(/(tcp|udp))?$"
#: Words that lift a limit, besides 0.
_LIFTS = ("none", "")
_Lift = Literal["none", ""]


def rule(
    schema: Any, allowed: str, valid: Callable[[Any], bool], *, code: str = UserError.code
) -> PlainValidator:
    """A check for ``Annotated[...]``: refuse a value ``valid`` rejects, saying "give
    ``allowed``", with the ``bungalow.errors`` code ``code``; ``schema`` (a type) is what
    the OpenAPI schema shows. A whole number written as a float (``3.0``) passes on as
    an int."""

    def check(value: Any) -> Any:
        value = _whole_or_as_is(value)
        if not valid(value):
            raise PydanticCustomError(code, "give {allowed}", {"allowed": allowed})
        return value

    return PlainValidator(check, json_schema_input_type=schema)


def _whole_or_as_is(value: Any) -> Any:
    """``3`` for JSON's ``3.0`` (JSON Schema's ``integer`` counts it as one); else ``value``."""
    if type(value) is float and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _parses(parse: Callable[[Any], object], value: Any) -> bool:
    try:
        parse(value)
    except BungalowError:
        return False
    return True


def whole(low: int, high: int, what: str = "a whole number") -> PlainValidator:
    """An integer from ``low`` to ``high`` (never a boolean or a float)."""
    return rule(
        Annotated[int, Field(ge=low, le=high)],
        f"{what} from {low} to {high}",
        lambda value: type(value) is int and low <= value <= high,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def seconds(low: float, high: float, *, above: bool = False, upto: str = "") -> PlainValidator:
    """A number of seconds from ``low`` (or above it) to ``high`` (``upto`` says it in words)."""
    lowest = f"above {low:g}" if above else f"from {low:g}"
    return rule(
        Annotated[float, Field(gt=low, le=high) if above else Field(ge=low, le=high)],
        f"a number of seconds {lowest} {upto or f'to {high:g}'}",
        lambda value: _is_number(value) and (value > low if above else value >= low)
        and value <= high,
    )  # fmt: skip


def size(low: int = 0, high: int = MAX_SIZE, *, lift: bool = False) -> PlainValidator:
    """A size in bytes, or as text (``512M``, ``8G``); with ``lift``, "none" too."""
    schema: Any = (
        Annotated[int, Field(ge=low, le=high)] | Annotated[str, Field(pattern=SIZE_PATTERN)]
    )
    if lift:
        schema = schema | _Lift

    def valid(value: Any) -> bool:
        if lift and value in _LIFTS and isinstance(value, str):
            return True
        if isinstance(value, bool) or not isinstance(value, int | str):
            return False
        if isinstance(value, str) and not matches(SIZE_PATTERN, value):
            return False
        try:
            return low <= parse_size(value) <= high
        except (UserError, OverflowError):  # OverflowError: more digits than a float holds
            return False

    allowed = f"a size from {format_size(low)} to {format_size(high)}" if low else (
        f"a size up to {format_size(high)}"
    )  # fmt: skip
    lifted = "; 0 or none lifts it" if lift else ""
    return rule(schema, f"{allowed}: bytes, or text such as 512M or 8G{lifted}", valid)


def duration() -> PlainValidator:
    """A duration above 0 and at most 100 years: seconds, or text such as ``2h``."""

    def valid(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return False
        try:
            if isinstance(value, str) and not matches(DURATION_PATTERN, value):
                return False
            return 0 < parse_duration(value) <= LONGEST_DURATION
        except UserError:
            return False

    return rule(
        Annotated[float, Field(gt=0, le=LONGEST_DURATION)]
        | Annotated[str, Field(pattern=DURATION_PATTERN)],
        "a duration above 0 and at most 100 years: seconds, or text such as 90s, 10m or 2h",
        valid,
    )


def decimal(
    high: float, allowed: str, *, percent: bool = False, lift: bool = False
) -> PlainValidator:
    """A number from 0 to ``high``, or the same as text (``0.5``; ``5%`` with ``percent``,
    a share of 1); with ``lift``, "none" too."""
    pattern = r"^ *[0-9]+(\.[0-9]+)? *%? *$" if percent else DECIMAL_PATTERN
    schema: Any = Annotated[float, Field(ge=0, le=high)] | Annotated[str, Field(pattern=pattern)]
    if lift:
        schema = schema | _Lift

    def valid(value: Any) -> bool:
        if lift and value in _LIFTS and isinstance(value, str):
            return True
        if isinstance(value, str) and re.fullmatch(pattern, value):
            text = value.strip()
            value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        return _is_number(value) and 0 <= value <= high

    return rule(schema, allowed, valid)


def count_or_text(high: int, allowed: str) -> PlainValidator:
    """A whole number from 0 to ``high``, as a number or as text; "none" (or 0) lifts it."""

    def valid(value: Any) -> bool:
        if value in _LIFTS and isinstance(value, str):
            return True
        if isinstance(value, str) and re.fullmatch(WHOLE_PATTERN, value):
            value = int(value)
        return type(value) is int and 0 <= value <= high

    schema = (
        Annotated[int, Field(ge=0, le=high)] | Annotated[str, Field(pattern=WHOLE_PATTERN)] | _Lift
    )
    return rule(schema, allowed, valid)


def choice(values: Iterable[str], what: str = "one of") -> PlainValidator:
    """One of ``values``, exactly (an enum in the schema)."""
    known = tuple(str(value) for value in values)
    return rule(
        Literal[known],
        f"{what} {', '.join(known)}",
        lambda value: isinstance(value, str) and value in known,
    )


def text(
    pattern: str, allowed: str, *, max_length: int | None = None, code: str = UserError.code
) -> PlainValidator:
    """A string ``pattern`` matches whole (and at most ``max_length`` characters long)."""
    return rule(
        Annotated[str, Field(pattern=pattern, max_length=max_length)],
        allowed,
        lambda value: matches(pattern, value) and (max_length is None or len(value) <= max_length),
        code=code,
    )


def name(what: str) -> PlainValidator:
    """A VM, snapshot, project or image name (:data:`bungalow.names.NAME_PATTERN`)."""
    return text(NAME_PATTERN, f"a {what} name: {NAME_RULE}", code=InvalidNameError.code)


def plain(max_length: int, what: str = "text") -> PlainValidator:
    """Any text up to ``max_length`` characters without a NUL."""
    return text(
        TEXT_PATTERN,
        f"{what} of at most {max_length} characters, without NUL",
        max_length=max_length,
    )


# -- the types request bodies are made of -----------------------------------------------------

Cpus = Annotated[int, whole(1, MAX_CPUS)]
#: A VM's memory: QEMU and the guest kernel need 128M.
Memory = Annotated[int | str, size(128 << 20)]
Disk = Annotated[int | str, size(1 << 20)]
Size = Annotated[int | str, size()]
Duration = Annotated[float | str, duration()]
Accel = Annotated[str, choice(ACCELS)]
Profile = Annotated[str, choice(PROFILES)]
Firmware = Annotated[str, choice(FIRMWARES)]
OnExpiry = Annotated[str, choice(ACTIONS)]
IdleAction = Annotated[str, choice(Action)]
#: A share of one vCPU above which a VM is busy: 0.05 or "5%".
CpuShare = Annotated[
    float | str, decimal(64, "a share of one vCPU from 0 to 64, such as 0.05 or 5%", percent=True)
]
CpuWeight = Annotated[int, whole(1, 10_000)]
CpuCap = Annotated[
    float | str,
    decimal(1024, "a number of CPUs from 0 to 1024, such as 0.5; 0 or none lifts it", lift=True),
]
#: A limit in bytes (the whole QEMU's memory); 0 or "none" lifts it.
SizeLimit = Annotated[int | str, size(lift=True)]
#: A limit in bytes a second (disk or network bandwidth); 0 or "none" lifts it.
RateLimit = Annotated[int | str, size(high=MAX_RATE, lift=True)]
Iops = Annotated[
    int | str,
    count_or_text(10**9, "a whole number of operations a second up to 10^9; 0 or none lifts it"),
]
Quota = Annotated[int, whole(0, 1_000_000)]
ForkCount = Annotated[int, whole(1, 64)]
StopTimeout = Annotated[float, seconds(0, 3600)]
#: What ``POST /v1/vms/NAME/wait`` waits for (daemon/vms/readiness.py).
WaitTarget = Annotated[str, choice(("services",))]
#: A working directory: text without NUL, at most 4096 characters (PATH_MAX).
ExecText = Annotated[str, plain(4096)]
#: A command's argument or an environment value: text without NUL, at most what a guest's
#: kernel takes in one (MAX_ARG_STRLEN); all of them together are checked against ARG_MAX
#: before the command is sent (guest/channel.py).
ExecArg = Annotated[str, plain(MAX_EXEC_ARG)]
Command = Annotated[str, plain(1 << 20, "a shell command")]
#: cloud-init user-data as text (its content is checked by bungalow.provision.userdata).
UserData = Annotated[str, plain(MAX_USER_DATA, "cloud-init user-data")]
#: One SSH public key line, ``type base64 [comment]`` (checked by bungalow.provision.sshkeys).
SshKey = Annotated[str, plain(MAX_KEY_LENGTH, "an SSH public key")]
#: A VM's SSH keys.
SshKeys = Annotated[list[SshKey], Field(max_length=MAX_KEYS)]
UserName = Annotated[str, plain(255)]
EnvName = Annotated[
    str,
    text(
        r"^[^=\x00]{1,255}$", "an environment variable's name: 1 to 255 characters, no '=' or NUL"
    ),
]
ExecTimeout = Annotated[
    float, seconds(0, LONGEST_DURATION, above=True, upto="and at most 100 years")
]
TerminalSize = Annotated[int, whole(1, 65535)]
HostPath = Annotated[
    str, text(r"^/[^\x00]{0,4095}$", "an absolute path, at most 4096 characters, without NUL")
]
#: An ISO: an image's name or id, or the absolute path of a file on the daemon's host.
MediumRef = Annotated[
    str,
    text(
        r"^(/[^\x00]{0,4095}|" + _IMAGE_PATTERN[2:-2] + ")$",
        "an ISO image's name or id, or an ISO file's absolute path",
    ),
]
#: A file or folder in the guest (a query parameter of the file routes).
GuestPath = Annotated[
    str, text(r"^[^\x00]{1,4096}$", "a path in the VM: 1 to 4096 characters, without NUL")
]
VmName = Annotated[str, name("VM")]
SnapshotName = Annotated[str, name("snapshot")]
ProjectName = Annotated[str, name("project")]
NetworkName = Annotated[str, name("network")]
#: The text is checked here for its form; the network service judges the numbers.
Subnet = Annotated[
    str,
    text(
        r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$",
        "an IPv4 network in CIDR form, such as 10.20.0.0/24",
    ),
]
ImageName = Annotated[str, name("image")]
ImageRef = Annotated[
    str,
    text(
        _IMAGE_PATTERN,
        f"an image: its name ({NAME_RULE}), or 4 to 64 hex digits of its id",
        code=InvalidNameError.code,
    ),
]
Owner = Annotated[str, text(OWNER_PATTERN, OWNER_RULE, code=InvalidNameError.code)]
Labels = Annotated[
    dict[
        Annotated[str, text(LABEL_KEY_PATTERN, LABEL_KEY_RULE, code=InvalidNameError.code)],
        Annotated[str, text(LABEL_VALUE_PATTERN, LABEL_VALUE_RULE, code=InvalidNameError.code)],
    ],
    Field(max_length=MAX_LABELS, json_schema_extra={"additionalProperties": False}),
]
#: A label filter: ``KEY`` (the VM carries the label) or ``KEY=VALUE``.
LabelFilter = Annotated[
    str,
    text(
        "^" + LABEL_KEY_PATTERN.strip("^$") + "(=" + LABEL_VALUE_PATTERN.strip("^$") + ")?$",
        f"KEY or KEY=VALUE, the key {LABEL_KEY_RULE}, the value {LABEL_VALUE_RULE}",
    ),
]
PortText = Annotated[
    str,
    rule(
        Annotated[str, Field(pattern=_PORT_PATTERN)],
        "a port forward HOST:GUEST, ADDRESS:HOST:GUEST or HOST:GUEST/udp, ports 1 to 65535, "
        "such as 8080:80",
        lambda value: matches(_PORT_PATTERN, value) and _parses(PortForward.parse, value),
    ),
]
NetworkText = Annotated[
    str,
    rule(
        Annotated[str, Field(pattern=_NETWORK_PATTERN)],
        f"a network: its name ({NAME_RULE}), or NAME:ADDRESS for a fixed IPv4 address "
        "such as backend:10.20.0.5",
        lambda value: matches(_NETWORK_PATTERN, value) and _parses(NetworkChoice.parse, value),
    ),
]
Base64 = Annotated[str, text(_BASE64_PATTERN, "bytes in base64 (RFC 4648, with padding)")]
