"""The memtest86+ ISO (Debian's memtest86+ package) booted for real under SeaBIOS and OVMF.

memtest86+ needs no agent and no disk: it is the smallest real operating system that
boots from an ISO through either firmware and draws on the screen. Its screen has a blue
background that no firmware's own screen has, and its clock and progress bars redraw
every second, so a frame that is mostly blue and then changes is memtest running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from tests.conftest import Env, _finish, _new_env
from tests.screens import screenshot
from tests.support import wait_until

pytestmark = pytest.mark.vm

MEMTEST = Path("/usr/lib/memtest86+/memtest86+x64.iso")


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    env = _new_env(own_images=True)
    yield env
    _finish(env)


def _blue_share(image: Image.Image) -> float:
    """The share of pixels that are clearly blue (memtest86+'s background)."""
    red, green, blue = (band.load() for band in image.split())
    width, height = image.size
    blue_pixels = sum(
        1
        for x in range(0, width, 4)
        for y in range(0, height, 4)
        if blue[x, y] > 96 and blue[x, y] > 2 * max(red[x, y], green[x, y])  # type: ignore[index,operator]
    )
    return blue_pixels / ((width // 4) * (height // 4))


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_memtest_boots_from_its_iso_and_draws_a_changing_screen(env: Env, firmware: str) -> None:
    name = f"mt-{firmware}"
    env.run(
        "launch", name, "--iso", str(MEMTEST), "--disk", "1G", "--memory", "256M",
        "--firmware", firmware,
    )  # fmt: skip
    try:
        frames: list[Image.Image] = []

        def memtest_drew() -> bool:
            frames[:] = [screenshot(env, name)]
            return _blue_share(frames[0]) > 0.5

        wait_until(f"memtest86+'s screen under {firmware}", memtest_drew, timeout=180, interval=1)
        first = frames[0]
        wait_until(
            "memtest86+ to redraw its screen",
            lambda: ImageChops.difference(first, screenshot(env, name)).getbbox() is not None,
            interval=1,
        )
        if firmware == "bios":
            assert "Booting from DVD/CD" in env.run("logs", name, "--firmware").stdout
    finally:
        env.run("rm", "-f", name)
