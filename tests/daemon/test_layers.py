"""The daemon's rooms and which way their imports point (docs/architecture.md, "Layers").

Read from the source with ``ast``, so a new module is held to the same rules
the moment it exists: the state package alone runs SQL, only the API and the
server know the web framework, and no sub-package imports one above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DAEMON = Path(__file__).resolve().parents[2] / "src" / "bungalow" / "daemon"

#: Each sub-package and the daemon sub-packages it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "state": set(),
    "tenancy": {"state"},
    "accounting": {"state"},
    "networks": {"state"},
    "vms": {"networks", "state"},
    "snapshots": {"vms", "state"},
    "images": {"snapshots", "state"},
    "sandboxes": {"snapshots", "vms", "state"},
    "telemetry": {"vms", "state"},
    "policies": {"snapshots", "vms", "state"},
    "api": {
        "accounting", "images", "networks", "policies", "sandboxes", "snapshots", "state",
        "telemetry", "tenancy", "vms",
    },
    "server": {
        "api", "accounting", "images", "networks", "policies", "sandboxes", "snapshots",
        "state", "telemetry", "tenancy", "vms",
    },
}  # fmt: skip
WEB = ("fastapi", "starlette", "uvicorn")


def _modules() -> list[Path]:
    return sorted(p for p in DAEMON.rglob("*.py") if p.parent != DAEMON)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _room(path: Path) -> str:
    return path.relative_to(DAEMON).parts[0]


def test_every_sub_package_is_known() -> None:
    rooms = {p.name for p in DAEMON.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert rooms == set(ALLOWED)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(DAEMON)))
def test_imports_point_down(path: Path) -> None:
    room = _room(path)
    for name in _imports(path):
        if name.startswith("bungalow.daemon."):
            other = name.split(".")[2]
            assert other == room or other in ALLOWED[room], f"{room} imports {name}"
        if room not in ("api", "server"):
            assert not name.startswith(WEB), f"{path.name} imports {name}: web types stay in api"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(DAEMON)))
def test_only_the_state_package_runs_sql(path: Path) -> None:
    if _room(path) == "state":
        return
    assert "sqlite3" not in _imports(path), f"{path} imports sqlite3"
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("execute", "executescript"):
            raise AssertionError(f"{path}:{node.lineno} runs SQL outside the state package")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            words = node.value.upper().split()
            assert not ({"SELECT", "UPDATE", "INSERT"} & set(words[:1])), (
                f"{path}:{node.lineno} holds SQL"
            )


def test_no_service_sets_a_hook_on_another_after_it_is_made() -> None:
    """Collaborators are constructor arguments (server/wiring.py), never assigned later."""
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Attribute)
                    and isinstance(target.value.value, ast.Name)
                    and target.value.value.id == "self"
                    and target.value.attr not in ("_db",)
                ):
                    raise AssertionError(
                        f"{path}:{node.lineno} sets self.{target.value.attr}.{target.attr}"
                    )


def test_the_composition_root_only_constructs() -> None:
    """server/wiring.py hands every collaborator over at construction: it assigns no
    attribute of anything it built."""
    tree = ast.parse((DAEMON / "server" / "wiring.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                assert not isinstance(target, ast.Attribute), f"wiring.py:{node.lineno}"
