"""QEMU's firmware descriptors: the JSON files that say which firmware image does what.

The ``ovmf`` package (and every other firmware package) installs one JSON file
per build into ``/usr/share/qemu/firmware``, in the format of QEMU's
``docs/interop/firmware.json``: the interface (``bios``, ``uefi``), how it is
mapped (``flash``: an executable and an NVRAM template), the architectures and
machine types it runs on, and its features (``secure-boot``, ``enrolled-keys``,
``requires-smm``...). Management tools pick firmware from these rather than from
file names: libvirt does, and so does bungalow.

Precedence is the specification's: the directories are searched from
``/usr/share/qemu/firmware`` (the distribution's) to ``/etc/qemu/firmware`` (the
host admin's); a file of the same name in a later one replaces the earlier one
(an empty file there hides it), and the files that remain are taken in the order
of their names, the first that fits winning.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where descriptors are looked for, lowest precedence first (firmware.json, "Search paths").
SEARCH_DIRS: tuple[Path, ...] = (Path("/usr/share/qemu/firmware"), Path("/etc/qemu/firmware"))


@dataclass(frozen=True)
class Target:
    """An architecture (QEMU's name: ``x86_64``, ``aarch64``) and machine type globs."""

    architecture: str
    machines: tuple[str, ...]

    def fits(self, architecture: str, machine: str) -> bool:
        """Whether ``machine`` (a versioned type such as ``pc-q35-7.2``) matches a glob."""
        return self.architecture == architecture and any(
            fnmatch.fnmatchcase(machine, glob) for glob in self.machines
        )


@dataclass(frozen=True)
class Descriptor:
    """One firmware descriptor as the file says it (paths are not checked here).

    ``code`` is the executable, ``nvram_template`` the variable store every VM copies
    (None for firmware with no store, such as SeaBIOS), both raw flash images for
    ``device`` ``flash``.
    """

    path: Path
    description: str
    interfaces: tuple[str, ...]
    device: str
    code: Path | None
    nvram_template: Path | None
    targets: tuple[Target, ...]
    features: frozenset[str]

    def runs_on(self, architecture: str, machine: str) -> bool:
        return any(target.fits(architecture, machine) for target in self.targets)


class DescriptorError(ValueError):
    """A descriptor file that is not a firmware descriptor (its path and what is wrong)."""


def parse(path: Path) -> Descriptor:
    """The descriptor in ``path``; DescriptorError when it is not JSON of the expected shape."""
    try:
        data = json.loads(path.read_text())
        return _descriptor(path, data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DescriptorError(f"{path} is not a firmware descriptor ({exc})") from None


def _descriptor(path: Path, data: dict[str, Any]) -> Descriptor:
    mapping = data["mapping"]
    device = str(mapping["device"])
    code = template = None
    if device == "flash":
        code = Path(mapping["executable"]["filename"])
        if "nvram-template" in mapping:
            template = Path(mapping["nvram-template"]["filename"])
        for part in ("executable", "nvram-template"):
            if part in mapping and mapping[part].get("format", "raw") != "raw":
                raise ValueError(f"its {part} is not raw")
    elif device == "memory":
        code = Path(mapping["filename"])
    return Descriptor(
        path=path,
        description=str(data.get("description", "")),
        interfaces=tuple(str(kind) for kind in data["interface-types"]),
        device=device,
        code=code,
        nvram_template=template,
        targets=tuple(
            Target(str(t["architecture"]), tuple(str(m) for m in t["machines"]))
            for t in data["targets"]
        ),
        features=frozenset(str(feature) for feature in data.get("features", ())),
    )


def in_precedence(dirs: Sequence[Path] = SEARCH_DIRS) -> list[Path]:
    """The descriptor files in force, in the order QEMU's specification tries them.

    A name in a later directory replaces the same name in an earlier one; an empty
    file replaces it with nothing (the admin's way to hide a distribution's).
    """
    chosen: dict[str, Path] = {}
    for directory in dirs:
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(".json") and entry.is_file():
                chosen[entry.name] = entry
    return [chosen[name] for name in sorted(chosen) if chosen[name].stat().st_size > 0]


def load(dirs: Sequence[Path] = SEARCH_DIRS) -> list[Descriptor]:
    """Every readable descriptor in force, first choice first; unreadable ones are skipped."""
    found = []
    for path in in_precedence(dirs):
        try:
            found.append(parse(path))
        except DescriptorError:
            continue
    return found
