"""The graphical console of a pc VM in the browser: noVNC over the dashboard's VNC websocket.

A debian-12 image booted on q35 (``--profile pc``): its screen keeps SeaBIOS's banner
(Debian's cloud kernel has only the dummy console), so a canvas with lit pixels is
the VM's display reaching the page through the websocket, the one-time password and
noVNC's decoder.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.web.conftest import LoggedIn
from tests.web.support import BOOT_TIMEOUT_MS, Dashboard, shoot

pytestmark = pytest.mark.vm

VM = "gfx"

#: Pixels of the canvas that are not black: how many the SeaBIOS banner lights, at least.
LIT = """(canvas) => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] > 0) lit += 1;
  return lit;
}"""


@pytest.fixture(scope="module")
def pc_vm(dashboard: Dashboard) -> str:
    dashboard.env.run("launch", VM, "--profile", "pc", "--memory", "512M", timeout=600)
    return VM


def test_the_screen_of_a_pc_vm_shows_in_a_canvas(
    dashboard: Dashboard, pc_vm: str, logged_in: LoggedIn
) -> None:
    page = logged_in(dashboard)
    page.goto(f"{dashboard.origin}/ui/#/vms/{pc_vm}/screen")
    panel = page.get_by_test_id("panel-screen")
    expect(panel.get_by_test_id("screen-status")).to_have_attribute(
        "data-state", "open", timeout=BOOT_TIMEOUT_MS
    )
    canvas = panel.get_by_test_id("screen").locator("canvas")
    expect(canvas).to_be_visible()
    page.wait_for_function(
        f"document.querySelector('[data-testid=screen] canvas') && "
        f"({LIT})(document.querySelector('[data-testid=screen] canvas')) > 100"
    )
    width, height = canvas.evaluate("(c) => [c.width, c.height]")
    assert (width, height) == (720, 400)  # VGA text mode, as `bungalow screenshot` sees it
    shoot(page, "vm-screen")
    # A second page gets a fresh ticket and password of its own: the first one is used.
    other = logged_in(dashboard)
    other.goto(f"{dashboard.origin}/ui/#/vms/{pc_vm}/screen")
    expect(other.get_by_test_id("screen-status")).to_have_attribute("data-state", "open")
