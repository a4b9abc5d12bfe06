"""Parsing and printing the sizes and durations users type (``1G``, ``512M``, ``10m``)."""

from __future__ import annotations

import math
import re
from datetime import datetime

from bungalow.errors import UserError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)(i?[bB])?\s*$")
_SIZE_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
#: The longest duration a lease, an idle period, a timeout or a retention may be: 100 years.
LONGEST_DURATION = 100 * 365 * 86400.0


def parse_size(text: str | int, *, what: str = "size") -> int:
    """Bytes in ``text``: a plain number is bytes, suffixes K/M/G/T are powers of 1024."""
    if isinstance(text, int):
        if text < 0:
            raise UserError(f"The {what} {text} is negative; give a positive size such as 1G.")
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise UserError(f"The {what} {text!r} is not a size; write it like 512M, 1G or 8G.")
    number, suffix, _ = match.groups()
    return int(float(number) * _SIZE_FACTORS[suffix.lower()])


def format_size(size: int) -> str:
    """The shortest exact-enough human form of ``size`` bytes (``1G``, ``1.5G``, ``300M``)."""
    for suffix, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f}{suffix}" if value == int(value) else f"{value:.1f}{suffix}"
    return f"{size}B"


def parse_duration(text: str | float, *, what: str = "duration") -> float:
    """Seconds in ``text``: a plain number is seconds; suffixes ms, s, m, h, d, w.

    UserError with a sentence for anything else (a boolean, NaN too), or for more than
    :data:`LONGEST_DURATION`, which no clock or database column needs to hold.
    """
    if isinstance(text, bool):
        raise UserError(f"The {what} {text!r} is not a duration; write it like 30s, 10m or 2h.")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION_RE.match(text)
        if not match:
            raise UserError(f"The {what} {text!r} is not a duration; write it like 30s, 10m or 2h.")
        number, suffix = match.groups()
        seconds = float(number) * _DURATION_FACTORS[suffix or "s"]
    if math.isnan(seconds):
        raise UserError(f"The {what} {text!r} is not a duration; write it like 30s, 10m or 2h.")
    if seconds > LONGEST_DURATION:
        raise UserError(f"The {what} {text!r} is longer than 100 years; give a shorter one.")
    return seconds


#: The longest duration a lease, an idle period, a timeout or a retention may be: 100 years.
LONGEST_DURATION = 100 * 365 * 86400.0


def parse_positive_duration(value: object, *, what: str) -> float:
    """Seconds in ``value`` (as :func:`parse_duration`), more than none and at most
    :data:`LONGEST_DURATION`: a lease, an idle period, an interval. UserError otherwise."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise UserError(f"The {what} {value!r} is not a duration; write it like 30s, 10m or 2h.")
    seconds = parse_duration(value, what=what)
    if seconds <= 0:
        raise UserError(f"The {what} must be positive, such as 30m or 2h; got {value!r}.")
    if seconds > LONGEST_DURATION:
        raise UserError(f"The {what} {value!r} is longer than 100 years; give a shorter one.")
    return seconds


def parse_moment(text: str, now: float, *, what: str = "--since") -> float:
    """Seconds since the epoch meant by ``text``: ``now``, a date or time (ISO 8601, local
    time unless it names a zone), or a duration before ``now`` (``2h``, ``7d``, ``1w``).

    UserError with a sentence for anything else.
    """
    if text.strip() == "now":
        return now
    match = _DURATION_RE.match(text)
    if match and match.group(2):  # a bare number could be seconds or a year: refused
        return now - parse_duration(text, what=what)
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UserError(
            f"The {what} value {text!r} is neither a date nor a duration; write a date such "
            "as 2026-11-01 or 2026-11-01T09:30, or how long ago, such as 2h or 7d."
        ) from None


def format_span(seconds: float) -> str:
    """A span of time in its largest unit, whole units only: ``3d``, ``5h``, ``12m``, ``40s``
    (``59m`` for 59 minutes 50 seconds: a span is never shown longer than it is)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{int(seconds / size)}{unit}"
    return f"{int(seconds)}s"
