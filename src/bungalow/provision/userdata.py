"""Checking cloud-init user-data before anything is made for it.

cloud-init decides what user-data is by its first line (cloudinit/handlers and
``user_data.py``'s ``INCLUSION_TYPES_MAP``): ``#cloud-config`` YAML, a ``#!``
script, MIME multipart, and a few rarer headers. What it cannot make sense of it
skips with a warning in the guest's log, where nobody looks; bungalow refuses it
on the host instead, with one sentence naming the problem and what to do.

What is checked:

- ``#cloud-config``: YAML (PyYAML's ``safe_load``) whose document is a mapping;
  a YAML error is reported with its line and column (1-based, counting the header).
- ``#!``: a script; cloud-init runs it once per instance, nothing more to check.
- ``Content-Type: multipart/...``: MIME as ``cloud-init devel make-mime`` writes it;
  each part must be one of the types cloud-init handles, and a
  ``text/cloud-config`` part is checked as above.
- ``#cloud-config-archive`` (a YAML list), ``#include``, ``#cloud-boothook``,
  ``#part-handler`` and ``## template: jinja`` are taken as they are.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from typing import Literal

import yaml

from bungalow.errors import UserError

#: The most user-data bungalow takes, in bytes of UTF-8: a seed is read whole by
#: cloud-init, and the API's request field is bounded by this (1 MiB).
MAX_USER_DATA = 1 << 20

Kind = Literal["cloud-config", "script", "multipart", "other"]

CLOUD_CONFIG = "#cloud-config"
#: Headers cloud-init takes besides #cloud-config and #!, checked no further.
_OTHER_HEADERS = (
    "#cloud-config-archive",
    "#include",
    "#include-once",
    "#cloud-boothook",
    "#part-handler",
    "## template: jinja",
)
#: MIME types of the parts cloud-init handles (its INCLUSION_TYPES_MAP and handlers).
_PART_TYPES = frozenset(
    {
        "text/cloud-config",
        "text/x-shellscript",
        "text/x-include-url",
        "text/x-include-once-url",
        "text/cloud-boothook",
        "text/part-handler",
        "text/cloud-config-archive",
        "text/jinja2",
        "text/x-shellscript-per-boot",
        "text/x-shellscript-per-instance",
        "text/x-shellscript-per-once",
    }
)
_WHAT_TO_DO = (
    "start it with #cloud-config and give YAML settings, or with #! for a script "
    "(see https://cloudinit.readthedocs.io/en/latest/explanation/format.html)"
)


@dataclass(frozen=True)
class UserData:
    """User-data that passed :func:`check_user_data`: its text and what kind it is."""

    text: str
    kind: Kind


def check_user_data(text: str, *, what: str = "The cloud-init user-data") -> UserData:
    """``text`` as cloud-init will read it, or UserError with one sentence saying what is
    wrong with it (a YAML error with line and column) and what to do. ``what`` names it
    at the start of that sentence (the CLI names the file)."""
    if len(text.encode()) > MAX_USER_DATA:
        raise UserError(
            f"{what} is {len(text.encode())} bytes, more than the "
            f"{MAX_USER_DATA} bytes (1 MiB) bungalow takes; make it smaller, e.g. by "
            "fetching large files in runcmd."
        )
    if "\x00" in text:
        raise UserError(f"{what} contains a NUL byte, so it is not text; " + _WHAT_TO_DO + ".")
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    if first.rstrip() == CLOUD_CONFIG:
        check_cloud_config(text, where=what)
        return UserData(text, "cloud-config")
    if first.startswith("#!"):
        return UserData(text, "script")
    if first.lower().startswith(("content-type:", "mime-version:")):
        _check_multipart(text, what)
        return UserData(text, "multipart")
    if first.startswith(_OTHER_HEADERS):
        return UserData(text, "other")
    raise UserError(_unknown_header_message(text, first, what))


def check_cloud_config(text: str, *, where: str) -> None:
    """UserError unless ``text`` is YAML whose document is a mapping (cloud-config)."""
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = error.problem or error.context or "it cannot be parsed"
        raise UserError(
            f"{where} is not valid YAML{position}: {problem}; fix it (`cloud-init schema "
            "-c FILE` checks it) and try again."
        ) from None
    except yaml.YAMLError as error:
        raise UserError(f"{where} is not valid YAML ({error}); fix it and try again.") from None
    if document is None:
        return  # only the header, or comments: cloud-init does nothing, as asked
    if not isinstance(document, dict):
        raise UserError(
            f"{where} is YAML but a {_yaml_kind(document)}, not a mapping of settings "
            "(such as `runcmd:` and `write_files:`); give `key: value` settings."
        )


def _check_multipart(text: str, what: str) -> None:
    message = email.message_from_string(text, policy=email.policy.compat32)
    if not message.is_multipart():
        raise UserError(
            f"{what} has MIME headers but is not a multipart message; "
            "make it with `cloud-init devel make-mime`, or " + _WHAT_TO_DO + "."
        )
    for number, part in enumerate(message.walk()):
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        if kind not in _PART_TYPES:
            raise UserError(
                f"Part {number} of {what[0].lower() + what[1:]} is {kind}, which cloud-init "
                "does not run; use text/cloud-config or text/x-shellscript."
            )
        if kind == "text/cloud-config":
            payload = part.get_payload(decode=True)
            body = payload.decode(errors="replace") if isinstance(payload, bytes) else ""
            check_cloud_config(
                body, where=f"Part {number} (text/cloud-config) of {what[0].lower() + what[1:]}"
            )


def _unknown_header_message(text: str, first: str, what: str) -> str:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        document = None
    if isinstance(document, dict):
        return (
            f"{what} is YAML but does not start with the line "
            "#cloud-config, so cloud-init would ignore it; add #cloud-config as its first line."
        )
    shown = first.strip()[:40] or "an empty line"
    return f"{what} starts with {shown!r}, which cloud-init does not take; " + (_WHAT_TO_DO + ".")


def _yaml_kind(document: object) -> str:
    if isinstance(document, list):
        return "list"
    if isinstance(document, str):
        return "single string"
    return type(document).__name__
