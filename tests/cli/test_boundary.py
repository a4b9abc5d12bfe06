"""The CLI is presentation: it knows the client, never the daemon's paths or protocols."""

from __future__ import annotations

import ast
from pathlib import Path

import bungalow.cli

CLI = Path(bungalow.cli.__file__).parent
#: Packages that speak to the daemon themselves; only bungalow.client may import them.
WIRE_PACKAGES = {"httpx", "websockets"}


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_cli_module_names_a_rest_path_or_imports_a_wire_package() -> None:
    modules = sorted(CLI.glob("*.py"))
    assert len(modules) > 10, "the CLI's modules were not found"
    for module in modules:
        text = module.read_text()
        assert "/v1/" not in text, f"{module.name} names a REST path; add a Client method"
        wire = {name for name in _imported(ast.parse(text)) if name.split(".")[0] in WIRE_PACKAGES}
        assert not wire, f"{module.name} imports {sorted(wire)}; only bungalow.client may"


def test_the_scan_sees_every_form_of_import() -> None:
    tree = ast.parse("import httpx\nfrom websockets.sync import client\ndef f():\n import json\n")
    assert _imported(tree) == {"httpx", "websockets.sync", "json"}
