"""Logging in to the dashboard in a browser: the one-time link, the token form, logging out.

No VM: a daemon with an empty image store of its own answers these pages.
"""

from __future__ import annotations

from playwright.sync_api import BrowserContext, expect

from tests.web.conftest import LoggedIn
from tests.web.support import SENTENCE, Dashboard, shoot


def test_the_link_bungalow_dashboard_prints_logs_in_once(
    bare_dashboard: Dashboard, context: BrowserContext
) -> None:
    url = bare_dashboard.login_url()
    page = context.new_page()
    page.goto(url)
    page.wait_for_url(f"{bare_dashboard.origin}/ui/**")
    expect(page.get_by_test_id("session-role")).to_contain_text("admin")
    expect(page.get_by_test_id("vm-empty")).to_be_visible()
    expect(page.get_by_test_id("live-indicator")).to_have_attribute("data-state", "open")
    shoot(page, "vms-empty")
    reply = context.new_page().goto(url)  # the same link again, as a second browser would
    assert reply is not None and reply.status == 401
    assert "bungalow dashboard" in reply.text()


def test_the_token_form_says_why_it_refuses_then_logs_in_with_the_keyboard(
    bare_dashboard: Dashboard, context: BrowserContext
) -> None:
    page = context.new_page()
    page.goto(f"{bare_dashboard.origin}/ui/")
    token = page.get_by_test_id("login-token")
    expect(token).to_be_focused()
    shoot(page, "login")
    token.fill("bgw_not-a-token")
    token.press("Enter")
    refusal = page.get_by_test_id("login-error")
    expect(refusal).to_have_text(SENTENCE)
    expect(page.get_by_test_id("nav-vms")).to_be_hidden()
    token.fill(bare_dashboard.admin_token())
    token.press("Enter")
    expect(page.get_by_test_id("nav-vms")).to_be_visible()
    expect(page.get_by_test_id("session-role")).to_contain_text("admin")


def test_logging_out_ends_the_session(bare_dashboard: Dashboard, logged_in: LoggedIn) -> None:
    page = logged_in(bare_dashboard)
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-form")).to_be_visible()
    reply = page.request.get(f"{bare_dashboard.origin}/auth/session")
    assert reply.status == 401
    page.reload()
    expect(page.get_by_test_id("login-form")).to_be_visible()
