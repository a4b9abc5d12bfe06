"""Fixtures for the SDK: a daemon home the SDK starts itself, and one VM to reuse.

Each test module gets its own data directory (``bw_module``). The SDK starts
bungalowd on first use, as it does for a user; the daemon inherits
``BUNGALOW_IMAGES`` so that it finds the shared, already built images, and
``BUNGALOW_TEST_CLOCK`` so that a test can move its clock past a timeout
(:func:`clock_moved`) instead of waiting for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from bungalow.client.http import Client
from bungalow.daemon.state.clock import CLOCK_ENV, advance
from bungalow.paths import DataDir
from tests.conftest import IMAGE_CACHE, Env


@pytest.fixture(scope="module")
def home(bw_module: Env) -> Iterator[DataDir]:
    (bw_module.home / "clock").write_text("0\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BUNGALOW_IMAGES", str(IMAGE_CACHE))
        patch.setenv(CLOCK_ENV, str(bw_module.home / "clock"))
        yield DataDir(bw_module.home)


@contextlib.contextmanager
def clock_moved(home: DataDir, seconds: float) -> Iterator[None]:
    """The daemon's clock ``seconds`` ahead inside the block, and back after it, so the
    module's later tests see the host's time again."""
    advance(home.root / "clock", seconds)
    try:
        yield
    finally:
        advance(home.root / "clock", -seconds)


@pytest.fixture(scope="module")
def client(home: DataDir) -> Iterator[Client]:
    with Client(home) as client:
        yield client


@pytest.fixture(scope="module")
def box(client: Client) -> str:
    """An ordinary VM, booted once per module, that tests attach to without owning it."""
    client.create_vm(name="box", image="debian-12", cpus=1, memory="512M")
    return "box"
