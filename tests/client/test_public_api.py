"""The package's public surface: what ``from bungalow import ...`` offers, and its cost."""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys

import pytest

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


# -- the surface itself, as trio's test_exports checks it ----------------------------------------


def test_all_is_sorted_unique_and_holds_every_lazy_name() -> None:
    assert bungalow.__all__ == sorted(set(bungalow.__all__))
    assert set(bungalow._LAZY) <= set(bungalow.__all__)
    eager = set(bungalow.__all__) - set(bungalow._LAZY) - {"__version__"}
    assert eager == {cls.__name__ for cls in errors.ERROR_CLASSES.values()}


def test_the_version_is_the_installed_distributions() -> None:
    assert bungalow.__version__ == importlib.metadata.version("bungalow")


def _public(cls: type) -> dict[str, list[str]]:
    """Public attribute -> its parameter names (empty for properties and plain attributes)."""
    shown: dict[str, list[str]] = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        value = inspect.getattr_static(cls, name)
        function = value.__func__ if isinstance(value, classmethod | staticmethod) else value
        shown[name] = list(inspect.signature(function).parameters) if callable(function) else []
    return {**shown, **{name: [] for name in inspect.get_annotations(cls)}}


#: (sync class, async class, what only the sync one has, what only the async one has)
PAIRS = [
    ("Sandbox", "AsyncSandbox", set(), {"create"}),  # a constructor cannot await the VM
    ("SandboxFiles", "AsyncSandboxFiles", set(), set()),
    ("ExecStream", "AsyncExecStream", {"close"}, {"aclose"}),
]


@pytest.mark.parametrize(("sync", "async_", "only_sync", "only_async"), PAIRS)
def test_the_sync_and_async_sdk_offer_the_same_calls(
    sync: str, async_: str, only_sync: set[str], only_async: set[str]
) -> None:
    from bungalow.client import async_sandbox, sandbox

    sync_api = _public(getattr(sandbox, sync))
    async_api = _public(getattr(async_sandbox, async_))
    assert (set(sync_api) - set(async_api), set(async_api) - set(sync_api)) == (
        only_sync,
        only_async,
    )
    for name in set(sync_api) & set(async_api):
        assert sync_api[name] == async_api[name], f"{sync}.{name} and {async_}.{name} differ"
