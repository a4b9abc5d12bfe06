"""docs/architecture.md names files; each must exist, or the document has drifted."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
#: Where a path the document names may be: the package, the daemon, the repository.
BASES = (ROOT / "src" / "bungalow", ROOT / "src" / "bungalow" / "daemon", ROOT)
_PATH = re.compile(r"`([\w./-]+/[\w.-]+\.(?:py|sh|md|js|mjs)|[\w-]+\.(?:py|sh|js))`")


def _exists(name: str) -> bool:
    if "/" not in name:  # a bare module name: anywhere in the package
        return any((ROOT / "src" / "bungalow").rglob(name))
    return any((base / name).exists() for base in BASES)


def test_every_file_the_architecture_names_exists() -> None:
    names = set(_PATH.findall(DOC.read_text()))
    assert len(names) > 30  # the pattern still finds the document's paths
    missing = sorted(name for name in names if not _exists(name))
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
