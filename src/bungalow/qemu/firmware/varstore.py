"""edk2's variable store: the flash image a UEFI VM keeps its variables in.

The file is a firmware volume (``EFI_FIRMWARE_VOLUME_HEADER``: a zero vector,
the ``EFI_SYSTEM_NV_DATA_FV`` GUID, the volume's length, ``_FVH``, attributes,
its header length...) whose data starts with a ``VARIABLE_STORE_HEADER`` (the
authenticated-variable GUID, size, format, state), then the variables, each an
``AUTHENTICATED_VARIABLE_HEADER`` (start id 0x55AA, state, attributes, counter,
time, key index, name and data sizes, vendor GUID), its UTF-16 name and its data,
4-byte aligned (edk2 ``MdeModulePkg/Include/Guid/VariableFormat.h``).

A store written by one firmware build does not fit another: a 2M build's
128 KiB store silently never saves in a 4M build (kholia/OSX-KVM#278). So a
vars file given with an import must have its template's size and headers.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from bungalow.errors import UserError

_FV_SIGNATURE_AT = 40
_HEADER_LENGTH_AT = 48
#: The variable store header's GUID, size, format and state (16 + 4 + 1 + 1 bytes).
_STORE_HEADER = 22
_STORE_HEADER_SIZE = 28
_VARIABLE_HEADER = struct.Struct("<HBBIQ16sIII16s")
_START_ID = 0x55AA
_VAR_ADDED = 0x3F
_VAR_IN_DELETED_TRANSITION = 0x3E


@dataclass(frozen=True)
class Variable:
    """One live UEFI variable: its name, vendor GUID, attributes and data."""

    name: str
    vendor: uuid.UUID
    attributes: int
    data: bytes


def header(path: Path) -> bytes:
    """The firmware volume and variable store headers of ``path`` (UserError if it has none)."""
    with path.open("rb") as file:
        head = file.read(0x100)
    if len(head) < 0x60 or head[_FV_SIGNATURE_AT : _FV_SIGNATURE_AT + 4] != b"_FVH":
        raise UserError(
            f"{path} is not a UEFI variable store (it has no firmware volume header); give "
            "the vars file of the VM's firmware, such as a copy of OVMF_VARS_4M.fd."
        )
    length = struct.unpack_from("<H", head, _HEADER_LENGTH_AT)[0]
    return head[: length + _STORE_HEADER]


def check_matches(vars_file: Path, template: Path) -> None:
    """UserError unless ``vars_file`` has ``template``'s size and headers (same firmware)."""
    size, wanted = vars_file.stat().st_size, template.stat().st_size
    if size != wanted or header(vars_file) != header(template):
        raise UserError(
            f"{vars_file} is a vars file from another firmware ({size} bytes, where "
            f"{template.name} has {wanted} and its headers differ); give the vars file the "
            "disk was used with under this firmware, or none to start from a blank store."
        )


def variables(path: Path) -> dict[str, Variable]:
    """The live variables in the store of ``path`` by name, each as last written (a
    variable being replaced is in the store twice until the new copy is added)."""
    data = path.read_bytes()
    start = struct.unpack_from("<H", data, _HEADER_LENGTH_AT)[0]
    store_size = struct.unpack_from("<I", data, start + 16)[0]
    offset, end = start + _STORE_HEADER_SIZE, min(len(data), start + store_size)
    found: dict[str, Variable] = {}
    while offset + _VARIABLE_HEADER.size <= end:
        start_id, state, _, attributes, _, _, _, name_size, data_size, vendor = (
            _VARIABLE_HEADER.unpack_from(data, offset)
        )
        if start_id != _START_ID:
            break
        body = offset + _VARIABLE_HEADER.size
        if state in (_VAR_ADDED, _VAR_IN_DELETED_TRANSITION):
            name = data[body : body + name_size].decode("utf-16-le").rstrip("\0")
            value = data[body + name_size : body + name_size + data_size]
            found[name] = Variable(name, uuid.UUID(bytes_le=vendor), attributes, value)
        offset = (body + name_size + data_size + 3) & ~3
    return found
