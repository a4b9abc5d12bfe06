"""TAPs for VMs on private networks: made on a real bridge, gone with their last descriptor."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.errors import BungalowError, UserError
from bungalow.host.net import tap

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="making TAPs and bridges needs root")

BRIDGE = f"nicbt{os.getpid() % 100000}"


@pytest.fixture
def bridge() -> Iterator[str]:
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    try:
        yield BRIDGE
    finally:
        subprocess.run(["ip", "link", "del", BRIDGE], check=True)


def test_tap_names_fit_the_kernel() -> None:
    assert tap.tap_name("0123456789ab", 3) == "bt0123456789ab3"
    with pytest.raises(UserError, match="at most 10"):
        tap.tap_name("0123456789ab", 10)


def test_a_tap_is_on_its_bridge_and_up_until_its_last_descriptor_closes(bridge: str) -> None:
    name = tap.tap_name(f"{os.getpid():012x}", 0)
    (opened,) = tap.open_all([(name, bridge)])
    held = os.dup(opened.fd)  # what QEMU would hold
    master = Path(f"/sys/class/net/{name}/master").resolve().name
    assert master == bridge
    assert int(Path(f"/sys/class/net/{name}/flags").read_text(), 16) & 1  # IFF_UP
    opened.close()
    assert tap.exists(name)
    os.close(held)
    assert not tap.exists(name)


def test_a_missing_bridge_is_said_and_leaves_no_tap() -> None:
    name = tap.tap_name(f"{os.getpid():012x}", 1)
    with pytest.raises(BungalowError, match="bridge nicnosuch of this network does not exist"):
        tap.open_tap(name, "nicnosuch")
    assert not tap.exists(name)
