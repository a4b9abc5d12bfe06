"""The dashboard's app in process, over the daemon's real object graph (no VM, no listener).

Requests go through ``httpx.ASGITransport`` to the very app the listener serves, at
the origin ``http://127.0.0.1:8250``; the test's clock (``SetClock``) is the
sessions' clock, so a test moves past a session's end without waiting.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bungalow.daemon.api.access import App
from bungalow.daemon.api.dashboard.app import dashboard_app
from bungalow.daemon.api.dashboard.auth import DashboardAuth
from bungalow.daemon.server.wiring import Daemon
from bungalow.daemon.telemetry.ticks import SampleTicks

ORIGIN = "http://127.0.0.1:8250"


@pytest.fixture
def web(tmp_path: Path) -> Path:
    """A web folder as B's pages and ``npm ci`` make it, with a file nobody may read."""
    root = tmp_path / "web"
    files = {
        "static/index.html": "<!doctype html><title>bungalow</title>",
        "static/app.js": "export const app = 1;",
        "static/js/vms.js": "export const vms = 1;",
        "static/style.css": "body {}",
        "node_modules/uplot/dist/uPlot.esm.js": "export default 1;",
        "node_modules/@novnc/novnc/lib/rfb.js": "export default 1;",
        "node_modules/@novnc/novnc/core/rfb.mjs": "export default 1;",
        "node_modules/@xterm/xterm/css/xterm.css": ".xterm {}",
        "node_modules/left-pad/index.js": "secret",
        "dashboard.token": "secret",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def site(daemon: Daemon, web: Path) -> App:
    services = daemon.services
    auth = DashboardAuth(services.sessions, services.dashboard_token, services.projects)
    return dashboard_app(services, auth, SampleTicks(), web)


def browser(site: App) -> httpx.AsyncClient:
    """A browser of the dashboard: it keeps cookies, and sends no Origin unless told."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=site), base_url=ORIGIN)


async def log_in(client: httpx.AsyncClient, token: str) -> dict[str, str]:
    """Log in with ``token``; the session's answer (with its ``csrf``)."""
    answer = await client.post("/auth/login", json={"token": token})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())
