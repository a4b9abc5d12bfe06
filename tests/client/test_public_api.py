"""The package's public surface: what ``from bungalow import ...`` offers, and its cost."""

from __future__ import annotations

import subprocess
import sys

import bungalow
from bungalow import errors


def test_every_public_name_resolves() -> None:
    for name in bungalow.__all__:
        assert getattr(bungalow, name) is not None, name
    assert set(bungalow.__all__) <= set(dir(bungalow))


def test_every_error_class_is_public() -> None:
    public = {getattr(bungalow, name) for name in bungalow.__all__}
    assert set(errors.ERROR_CLASSES.values()) <= public


def test_importing_the_package_loads_neither_httpx_nor_the_sdk() -> None:
    probe = (
        "import sys, bungalow; "
        "print(sorted(m for m in sys.modules if m == 'httpx' or m.startswith('bungalow.client')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_the_sdk_loads_on_first_use() -> None:
    from bungalow.client.sandbox import Sandbox

    assert bungalow.Sandbox is Sandbox
