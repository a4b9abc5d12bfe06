"""What a VM, image or snapshot may be called.

Names end up in file paths and in QEMU option strings, where ``,`` and ``=``
separate options, so the allowed alphabet is narrow on purpose.
"""

from __future__ import annotations

import re

from bungalow.errors import InvalidNameError

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_LABEL_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,62}$")
_LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9._:/@+-]{0,63}$")
_OWNER_RE = re.compile(r"^[A-Za-z0-9._@+-]{1,64}$")


def validate_name(name: str, *, what: str = "VM") -> str:
    """Return ``name`` if it is a valid name for a ``what``, else raise InvalidNameError."""
    if not _NAME_RE.match(name) or name.endswith("-"):
        raise InvalidNameError(
            f"The {what} name {name!r} is not valid; use 1 to 63 lower-case letters, digits "
            "and hyphens, starting with a letter or digit."
        )
    return name


def validate_option_path(path: str, *, what: str = "path") -> str:
    """Refuse a host path QEMU would misread as several options (``,``) or that has spaces."""
    bad = [c for c in (",", "=", " ", "\n", "\t") if c in path]
    if bad:
        raise InvalidNameError(
            f"The {what} {path!r} contains {bad[0]!r}, which QEMU would misread; "
            "move or rename it to a path without commas, equals signs or spaces."
        )
    return path


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    """Return ``labels`` if every key and value is valid, else raise InvalidNameError."""
    for key, value in labels.items():
        if not _LABEL_KEY_RE.match(key):
            raise InvalidNameError(
                f"The label key {key!r} is not valid; use 1 to 63 lower-case letters, digits, "
                "'.', '_', '/' and '-', starting with a letter or digit, as in purpose=ci."
            )
        if not isinstance(value, str) or not _LABEL_VALUE_RE.match(value):
            raise InvalidNameError(
                f"The value {value!r} of label {key} is not valid; use up to 63 letters, "
                "digits and '.', '_', ':', '/', '@', '+', '-'."
            )
    return labels


def parse_labels(words: list[str]) -> dict[str, str]:
    """``["purpose=ci", "team=a"]`` as a dict; a word without ``=`` is refused."""
    labels: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise InvalidNameError(
                f"The label {word!r} has no value; write KEY=VALUE, such as purpose=ci."
            )
        labels[key] = value
    return validate_labels(labels)


def validate_owner(owner: str) -> str:
    """An owner is a user or team name: 1 to 64 letters, digits and ``._@+-``."""
    if not _OWNER_RE.match(owner):
        raise InvalidNameError(
            f"The owner {owner!r} is not valid; use 1 to 64 letters, digits and '.', '_', "
            "'@', '+', '-', such as alice."
        )
    return owner
