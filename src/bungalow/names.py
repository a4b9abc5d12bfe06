"""What a VM, image or snapshot may be called, and what labels and owners look like.

Names end up in file paths and in QEMU option strings, where ``,`` and ``=``
separate options, so the allowed alphabet is narrow on purpose. Each rule is
here twice over, as a pattern (``*_PATTERN``, which the API's schema shows
clients) and as the words a refusal uses (``*_RULE``); the checks below use both.
"""

from __future__ import annotations

import re

from bungalow.errors import InvalidNameError

#: A VM, image, snapshot or project name.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
NAME_RULE = (
    "1 to 63 lower-case letters, digits and hyphens, starting and ending with a letter or digit"
)
LABEL_KEY_PATTERN = r"^[a-z0-9][a-z0-9._/-]{0,62}$"
LABEL_KEY_RULE = (
    "1 to 63 lower-case letters, digits, '.', '_', '/' and '-', starting with a letter or digit"
)
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9._:/@+-]{0,63}$"
LABEL_VALUE_RULE = "up to 63 letters, digits and '.', '_', ':', '/', '@', '+', '-'"
#: How many labels one VM may carry.
MAX_LABELS = 64
OWNER_PATTERN = r"^[A-Za-z0-9._@+-]{1,64}$"
OWNER_RULE = "1 to 64 letters, digits and '.', '_', '@', '+', '-'"


def matches(pattern: str, text: object) -> bool:
    """Whether ``text`` is a string that ``pattern`` matches whole (no trailing newline)."""
    return isinstance(text, str) and re.fullmatch(pattern, text) is not None


def validate_name(name: str, *, what: str = "VM") -> str:
    """Return ``name`` if it is a valid name for a ``what``, else raise InvalidNameError."""
    if not matches(NAME_PATTERN, name):
        raise InvalidNameError(f"The {what} name {name!r} is not valid; use {NAME_RULE}.")
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
    if len(labels) > MAX_LABELS:
        raise InvalidNameError(
            f"{len(labels)} labels are too many; a VM may carry at most {MAX_LABELS}."
        )
    for key, value in labels.items():
        if not matches(LABEL_KEY_PATTERN, key):
            raise InvalidNameError(
                f"The label key {key!r} is not valid; use {LABEL_KEY_RULE}, as in purpose=ci."
            )
        if not matches(LABEL_VALUE_PATTERN, value):
            raise InvalidNameError(
                f"The value {value!r} of label {key} is not valid; use {LABEL_VALUE_RULE}."
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
    if not matches(OWNER_PATTERN, owner):
        raise InvalidNameError(
            f"The owner {owner!r} is not valid; use {OWNER_RULE}, such as alice."
        )
    return owner
