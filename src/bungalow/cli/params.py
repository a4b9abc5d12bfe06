"""The kinds of values options take, parsed once for every command.

Every option or argument that takes a length of time (``stop --timeout``, ``--ttl``,
``--idle-after``, ``lease set``, ``top -n``...) is a :class:`Duration`, every moment
(``--since``, ``--until``) a :class:`Moment`, every count (``events -n``, ``fork
--count``) a :class:`Count`: the same forms are accepted everywhere (``90s``, ``10m``,
``2h``, ``1d``, ``1w``, a plain number of seconds) and a value that does not fit is refused
with the same one sentence naming the option, as a :class:`~bungalow.errors.UserError`
(one line on stderr, exit 1), before anything is asked of the daemon.
"""

from __future__ import annotations

import time
from typing import Any

import click

from bungalow.errors import UserError
from bungalow.units import format_span, parse_duration, parse_moment, parse_positive_duration


def _what(param: click.Parameter | None, what: str | None) -> str:
    """How a sentence names the option: ``--timeout`` (its longest name), or ``what``."""
    if what is not None:
        return what
    if param is None:
        return "value"
    names = [name for name in getattr(param, "opts", []) if name.startswith("--")]
    return names[0] if names else param.human_readable_name


class Duration(click.ParamType[float]):
    """Seconds, from ``30s``, ``10m``, ``2h``, ``1d``, ``1w`` or a number of seconds: more
    than none (or, with ``zero``, none too) and at most 100 years (or ``most`` seconds)."""

    name = "duration"

    def __init__(
        self, *, zero: bool = False, most: float | None = None, what: str | None = None
    ) -> None:
        self.zero = zero
        self.most = most
        self.what = what

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value  # a default, already seconds
        what = _what(param, self.what)
        if self.zero and parse_duration(value, what=what) == 0:
            return 0.0
        seconds = parse_positive_duration(value, what=what)
        if self.most is not None and seconds > self.most:
            longest = format_span(self.most)
            raise UserError(
                f"The {what} {value!r} is longer than {longest}; give {longest} or less."
            )
        return seconds


class Moment(click.ParamType[str]):
    """A date or time (``2026-11-01``, ``2026-11-01T09:30``), ``now``, or a duration ago
    (``2h``, ``7d``, ``1w``). It is checked here and passed on as written: the daemon
    reads it against its own clock."""

    name = "moment"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        parse_moment(str(value), time.time(), what=_what(param, None))
        return str(value)


class Count(click.ParamType[int]):
    """A whole number of at least ``minimum``."""

    name = "integer"

    def __init__(self, minimum: int = 1) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            count = value
        else:
            try:
                count = int(str(value).strip())
            except ValueError:
                count = self.minimum - 1
        if count < self.minimum:
            raise UserError(
                f"The {_what(param, None)} {value!r} is not a whole number of {self.minimum} "
                f"or more; give one such as {max(self.minimum, 10)}."
            )
        return count
