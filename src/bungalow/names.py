"""What a VM, image or snapshot may be called.

Names end up in file paths and in QEMU option strings, where ``,`` and ``=``
separate options, so the allowed alphabet is narrow on purpose.
"""

from __future__ import annotations

import re

from bungalow.errors import InvalidNameError

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


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
