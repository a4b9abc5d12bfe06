"""The dashboard's files (api/dashboard/assets.py): the pages and four vendored packages,
with the MIME types browsers need for ES modules, and nothing else of the disk."""

from __future__ import annotations

import pytest

from bungalow.daemon.api.access import App
from tests.daemon.api.dashboard.conftest import browser


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/ui/", "text/html"),
        ("/ui/index.html", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/js/vms.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
        ("/vendor/uplot/dist/uPlot.esm.js", "text/javascript"),
        ("/vendor/@novnc/novnc/lib/rfb.js", "text/javascript"),
        ("/vendor/@novnc/novnc/core/rfb.mjs", "text/javascript"),
        ("/vendor/@xterm/xterm/css/xterm.css", "text/css"),
    ],
)
async def test_pages_and_vendored_files_are_served_with_their_mime_type(
    site: App, path: str, media_type: str
) -> None:
    async with browser(site) as anyone:  # the pages need no session: the login is one
        answer = await anyone.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] == media_type
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/vendor/left-pad/index.js",  # node_modules, but not one of the four
        "/vendor/uplot/../left-pad/index.js",
        "/vendor/uplot/%2e%2e/left-pad/index.js",
        "/vendor/uplot/..%2f..%2f..%2fdashboard.token",
        "/ui/../dashboard.token",
        "/ui/%2e%2e/dashboard.token",
        "/ui/%2e%2e%2f%2e%2e%2fdashboard.token",
        "/vendor/@xterm/../../dashboard.token",
        "/ui/missing.js",
    ],
)
async def test_nothing_outside_those_folders_is_served(site: App, path: str) -> None:
    async with browser(site) as anyone:
        answer = await anyone.get(path)
    assert answer.status_code == 404, path
    assert "secret" not in answer.text


async def test_the_root_leads_to_the_pages(site: App) -> None:
    async with browser(site) as anyone:
        answer = await anyone.get("/")
    assert answer.status_code in (302, 307) and answer.headers["location"] == "/ui/"
