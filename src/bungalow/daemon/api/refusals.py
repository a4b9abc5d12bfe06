"""A request refused before any route ran, as one sentence: which field, what was given,
what is allowed.

pydantic reports what is wrong as a list of errors (its own, or those of the
rules in schemas/fields.py, whose message is already the rule: "give a whole
number from 1 to 255"); the first becomes the sentence, such as::

    The request's cpus "lots" is not valid: give a whole number from 1 to 255;
    see GET /openapi.json.

Starlette's own refusals (no such route, a method the route does not take, a
body that cannot be read) become sentences too, with their status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bungalow.errors import (
    ERROR_CLASSES,
    BungalowError,
    UserError,
    error_from_code,
    error_from_status,
)

_SCHEMA = "see GET /openapi.json"
#: Where a value was, when not in the body.
_PLACES = {"query": "query parameter ", "path": "path parameter ", "header": "header "}
#: What pydantic's own error types allow, in words.
_ALLOWED = {
    "string_type": "give text",
    "int_type": "give a whole number",
    "int_parsing": "give a whole number",
    "int_from_float": "give a whole number",
    "float_type": "give a number",
    "float_parsing": "give a number",
    "finite_number": "give a finite number",
    "bool_type": "give true or false",
    "bool_parsing": "give true or false",
    "list_type": "give a list",
    "dict_type": "give a JSON object",
    "model_type": "give a JSON object",
    "model_attributes_type": "give a JSON object",
    "greater_than_equal": "give {ge} or more",
    "greater_than": "give more than {gt}",
    "less_than_equal": "give {le} or less",
    "less_than": "give less than {lt}",
    "too_long": "give at most {max_length}",
    "too_short": "give at least {min_length}",
    "string_too_long": "give at most {max_length} characters",
    "string_too_short": "give at least {min_length} characters",
    "string_pattern_mismatch": "give text matching {pattern}",
    "literal_error": "give one of {expected}",
    "enum": "give one of {expected}",
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def refusal(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The ``bungalow.errors`` code and the sentence of the first of ``errors`` (pydantic's,
    as FastAPI reports them, each ``loc`` starting with body, query, path or header)."""
    if not errors:
        return UserError.code, f"The request is not valid; {_SCHEMA}."
    error = errors[0]
    kind = str(error.get("type", ""))
    code = kind if _is_refusal_code(kind) else UserError.code
    place, parts, is_key = _where(error.get("loc", ()))
    field = place + _dotted(parts)
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "it cannot be parsed")
        return (
            code,
            f"The request's body is not valid JSON ({reason}); send a JSON object; {_SCHEMA}.",
        )
    if isinstance(error.get("input"), bytes):  # sent as something else than JSON
        return code, (
            f"The request's body is not JSON; send a JSON object, with Content-Type: "
            f"application/json; {_SCHEMA}."
        )
    if kind == "missing":
        return code, f"The request has no {field}, which is required; {_SCHEMA}."
    if kind == "extra_forbidden":
        return code, f"The request's {field} is not a field this call takes; {_SCHEMA}."
    what = f"{place}{_dotted(parts)} key" if is_key else field or "body"
    allowed = _allowed(kind, error)
    return (
        code,
        f"The request's {what} {_shown(error.get('input'))} is not valid: {allowed}; {_SCHEMA}.",
    )


def refused_body(errors: Sequence[Mapping[str, Any]]) -> BungalowError:
    """The error for a body ``model_validate`` refused with ``errors`` (a websocket's first
    frame, which FastAPI does not check), with the sentence :func:`refusal` gives."""
    return error_from_code(*refusal([{**e, "loc": ("body", *e.get("loc", ()))} for e in errors]))


def refused_by_starlette(status: int, detail: str, method: str, path: str) -> tuple[str, str]:
    """The code and sentence of a refusal Starlette or FastAPI made with HTTP ``status``."""
    cls = type(error_from_status(status, detail))
    code = UserError.code if cls is BungalowError and 400 <= status < 500 else cls.code
    if status == 404:
        return code, f"bungalowd has no {method} {path}; GET /openapi.json lists what it has."
    if status == 405:
        return code, f"{path} does not take {method}; GET /openapi.json says what it takes."
    if status == 400:
        return code, f"The request's body cannot be read ({detail}); send JSON in UTF-8; {_SCHEMA}."
    return code, f"bungalowd refused the request ({detail}); {_SCHEMA}."


def _is_refusal_code(kind: str) -> bool:
    """Whether a rule named a ``bungalow.errors`` code of a refusal (invalid_name...)."""
    cls = ERROR_CLASSES.get(kind)
    return cls is not None and issubclass(cls, UserError)


def _where(loc: Sequence[str | int]) -> tuple[str, list[str | int], bool]:
    """Where the value is (a prefix such as "query parameter "), the path to it inside,
    and whether it is a dict's key rather than a value."""
    place, *parts = loc or ("body",)
    is_key = bool(parts) and parts[-1] == "[key]"
    if is_key:
        parts = parts[:-2]
    return _PLACES.get(str(place), ""), parts, is_key


def _dotted(parts: Sequence[str | int]) -> str:
    """``labels.team``, ``argv[2]``, ``env["A B"]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _allowed(kind: str, error: Mapping[str, Any]) -> str:
    """What the value should have been, in words: the rule's own, or pydantic's type's."""
    context = error.get("ctx") or {}
    if kind in _ALLOWED:
        try:
            return _ALLOWED[kind].format(**context)
        except (KeyError, IndexError):
            pass
    message = str(error.get("msg", "it is not valid")).rstrip(".")
    return message[:1].lower() + message[1:]


def _shown(value: Any, limit: int = 40) -> str:
    """A value as JSON on one line, cut to ``limit`` characters."""
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        shown = repr(value)
    shown = shown.replace("\n", " ")
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
