"""What the dashboard listener refuses, at HTTP level (no browser, no VM): a write without the
session's CSRF token, a bad token, a reused login ticket, a request with no session, a
websocket with no ticket. The ticket refusals of the consoles are in test_vm_pages.py, beside
the VM they need."""

from __future__ import annotations

import re

import httpx

from tests.web.support import Dashboard, error_message


def test_a_write_without_the_csrf_token_is_refused_and_with_it_reaches_the_api(
    bare_dashboard: Dashboard,
) -> None:
    body = {"name": "web-csrf", "image": "no-such-image"}
    with bare_dashboard.session() as session:
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            reply = session.http.post("/v1/vms", json=body, headers=headers)
            assert reply.status_code == 403, reply.text
            assert "CSRF" in error_message(reply)
        deleted = session.http.delete("/v1/vms/web-csrf")
        assert deleted.status_code == 403, deleted.text
        # With the token, the request is the API's own: its sentence about the image.
        reply = session.http.post("/v1/vms", json=body, headers={"X-CSRF-Token": session.csrf})
        assert reply.status_code == 404, reply.text
        assert "no-such-image" in error_message(reply)
        assert session.http.get("/v1/vms").json() == []


def test_the_session_cookie_is_httponly_strict_and_logging_out_ends_it(
    bare_dashboard: Dashboard,
) -> None:
    with bare_dashboard.session() as session:
        assert session.role == "admin" and session.project is None
        login = session.http.post("/auth/login", json={"token": bare_dashboard.admin_token()})
        cookie = _set_cookie(login)  # a new session: its own CSRF secret from here on
        assert cookie.startswith("bungalow_session=")
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path"} <= attributes, cookie
        assert re.search(r"samesite=strict", cookie, re.I), cookie
        assert "secure" not in attributes  # plain HTTP on loopback: a Secure cookie never returns
        assert session.http.get("/auth/session").json()["role"] == "admin"
        stale = session.http.post("/auth/logout", headers={"X-CSRF-Token": session.csrf})
        assert stale.status_code == 403, stale.text  # the replaced session's secret
        reply = session.http.post("/auth/logout", headers={"X-CSRF-Token": login.json()["csrf"]})
        assert reply.status_code == 204, reply.text
        assert session.http.get("/auth/session").status_code == 401
        assert session.http.get("/v1/vms").status_code == 401


def test_no_session_and_a_bad_token_are_refused_with_a_sentence(
    bare_dashboard: Dashboard,
) -> None:
    with httpx.Client(base_url=bare_dashboard.origin) as http:
        reply = http.get("/v1/vms")
        assert reply.status_code == 401, reply.text
        assert error_message(reply)
        reply = http.post("/auth/login", json={"token": "bgw_not-a-token"})
        assert reply.status_code == 401, reply.text
        assert error_message(reply).endswith(".")
        assert "bungalow_session" not in http.cookies


def test_a_login_ticket_works_once(bare_dashboard: Dashboard) -> None:
    url = bare_dashboard.login_url()
    with httpx.Client() as http:
        first = http.get(url)
        assert first.status_code in (302, 303, 307), first.text
        assert first.headers["location"].endswith("/ui/")
        assert "bungalow_session" in http.cookies
    with httpx.Client() as http:
        again = http.get(url)
        assert again.status_code == 401
        assert "bungalow dashboard" in again.text
        assert "bungalow_session" not in http.cookies


def test_a_websocket_without_a_ticket_is_refused_before_anything_flows(
    bare_dashboard: Dashboard,
) -> None:
    with bare_dashboard.session() as session:
        for path in ("/v1/vms/web-x/console", "/v1/vms/web-x/vnc/ws?ticket=made-up"):
            assert bare_dashboard.refusal_of(path, cookie=session.cookie) == 4401


def _set_cookie(reply: httpx.Response) -> str:
    assert reply.status_code == 200, reply.text
    return next(
        value for value in reply.headers.get_list("set-cookie") if "bungalow_session" in value
    )
