"""Fixtures of the dashboard's tests: a daemon with its listener on, a browser, logged-in pages.

The browser is Debian's chromium driven by Playwright for Python through its path
(nothing is downloaded), headless, one per test module; each test gets a fresh
browser context (cookies of its own) with a laptop-sized viewport. A daemon with
the dashboard listener on a free loopback port is shared by a module's tests,
as their VMs are: booting under TCG is what these tests spend their time on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import _finish, _new_env
from tests.support import free_port, wait_until
from tests.web.support import CHROMIUM, Dashboard, dashboard_config

#: A laptop's screen, for "readable on a laptop" and the screenshots.
VIEWPORT = {"width": 1366, "height": 768}

LoggedIn = Callable[..., Page]

#: What a page may take to show a change on a busy 2-CPU host where other tests boot VMs.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless chromium 156 from Debian's package (scripts/install puts it there).

    One a module, not one a session: while Playwright's sync API runs, its event loop
    counts as running in this thread, and the suite's ``async def`` tests (asyncio.run)
    in a module after it would be refused. Starting chromium takes about a second."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run ./scripts/install (Debian's chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


def _listening(origin: str) -> bool:
    try:
        httpx.get(f"{origin}/auth/session", timeout=5)
    except httpx.TransportError:
        return False
    return True


@contextlib.contextmanager
def _dashboard(own_images: bool) -> Iterator[Dashboard]:
    env = _new_env(own_images=own_images)
    port = free_port()
    (env.home / "config.toml").write_text(dashboard_config(port))
    dashboard = Dashboard(env, port)
    try:
        env.run("ls")  # starts the daemon, and with it the listener
        wait_until("the dashboard listener", lambda: _listening(dashboard.origin))
        yield dashboard
    finally:
        _finish(env)


@pytest.fixture(scope="module")
def dashboard(image_cache: Path) -> Iterator[Dashboard]:
    """A daemon with the dashboard on and the shared image store, for a module's VMs."""
    with _dashboard(own_images=False) as dashboard:
        yield dashboard


@pytest.fixture(scope="module")
def bare_dashboard() -> Iterator[Dashboard]:
    """A daemon with the dashboard on and an empty image store of its own: boots nothing."""
    with _dashboard(own_images=True) as dashboard:
        yield dashboard


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A browser context of a test's own: no cookie, no session from another test."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    yield context
    context.close()


@pytest.fixture
def logged_in(context: BrowserContext) -> LoggedIn:
    """``logged_in(dashboard)``: a page logged in through ``bungalow dashboard``'s ticket URL
    (the admin); ``logged_in(dashboard, token)`` logs in with a token as the login form does."""

    def open_page(dashboard: Dashboard, token: str | None = None) -> Page:
        page = context.new_page()
        if token is None:
            page.goto(dashboard.login_url())
        else:
            reply = context.request.post(f"{dashboard.origin}/auth/login", data={"token": token})
            assert reply.ok, reply.text()
            page.goto(f"{dashboard.origin}/ui/")
        page.wait_for_url(f"{dashboard.origin}/ui/**")
        return page

    return open_page
