"""Logging in to the dashboard and what a session may do (api/dashboard/auth.py, app.py):
the admin's token, a project's token scoped as on the socket, CSRF, expiry, logout."""

from __future__ import annotations

import httpx
import pytest

from bungalow.daemon.api.access import App
from bungalow.daemon.server.wiring import Daemon, app_for
from bungalow.daemon.state.lifecycle import VmState
from tests.daemon.api.conftest import error_of, projects_and_vms
from tests.daemon.api.dashboard.conftest import browser, log_in
from tests.daemon.records import SetClock


async def test_the_admins_token_opens_an_admin_session_seeing_every_vm(
    site: App, daemon: Daemon
) -> None:
    projects_and_vms(daemon)
    async with browser(site) as admin:
        answer = await admin.post("/auth/login", json={"token": daemon.services.dashboard_token})
        assert answer.status_code == 200
        session = answer.json()
        assert session["role"] == "admin" and session["project"] is None
        assert session["expires_at"].endswith("Z") and len(session["csrf"]) >= 32
        cookie = answer.headers["set-cookie"]
        assert "bungalow_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie and "Path=/" in cookie and "Secure" not in cookie
        listed = (await admin.get("/v1/vms")).json()
        assert sorted(v["name"] for v in listed) == ["admins", "mine", "theirs"]
        assert (await admin.get("/auth/session")).json() == session
        assert (await admin.get("/v1/projects")).status_code == 200


async def test_a_projects_session_sees_only_its_own_as_its_token_does(
    site: App, daemon: Daemon
) -> None:
    tokens = projects_and_vms(daemon)
    async with browser(site) as member:
        session = await log_in(member, tokens["p1"])
        assert (session["role"], session["project"]) == ("project", "p1")
        assert [v["name"] for v in (await member.get("/v1/vms")).json()] == ["mine"]
        assert error_of(await member.get("/v1/vms/theirs"))[:2] == (404, "vm_not_found")
        csrf = {"X-CSRF-Token": session["csrf"]}
        answer = await member.post("/v1/vms/theirs/stop", headers=csrf)
        assert error_of(answer)[:2] == (404, "vm_not_found")
        assert error_of(await member.get("/v1/projects"))[:2] == (403, "forbidden")
        assert error_of(await member.post("/v1/dashboard", headers=csrf))[:2] == (403, "forbidden")
        ticket = await member.post(
            "/auth/tickets", json={"purpose": "console", "vm": "theirs"}, headers=csrf
        )
        assert error_of(ticket)[:2] == (404, "vm_not_found")
    assert daemon.store.vms.get("theirs").state is VmState.RUNNING


async def test_a_removed_projects_sessions_end(site: App, daemon: Daemon) -> None:
    tokens = projects_and_vms(daemon)
    async with browser(site) as member:
        await log_in(member, tokens["p2"])
        daemon.services.projects.remove("p2", orphan_vms=True)
        assert error_of(await member.get("/v1/vms"))[:2] == (401, "unauthorized")


@pytest.mark.parametrize("body", [{"token": "nope"}, {"token": ""}, {}, {"token": 7}])
async def test_a_bad_token_is_a_401_with_a_sentence(
    site: App, daemon: Daemon, body: dict[str, object]
) -> None:
    projects_and_vms(daemon)
    async with browser(site) as stranger:
        answer = await stranger.post("/auth/login", json=body)
        assert error_of(answer) == (
            401, "unauthorized",
            "The token is not valid; run `bungalow dashboard --token` on the host for the "
            "admin's, or ask the admin for your project's bgw_ token.",
        )  # fmt: skip
        assert "set-cookie" not in answer.headers
        assert error_of(await stranger.get("/v1/vms"))[:2] == (401, "unauthorized")
        assert error_of(await stranger.get("/auth/session"))[:2] == (401, "unauthorized")
        answer = await stranger.post("/auth/login", content=b"not json")
        assert error_of(answer)[:2] == (400, "invalid_request")


async def test_a_session_ends_after_session_minutes(
    site: App, daemon: Daemon, clock: SetClock
) -> None:
    async with browser(site) as admin:
        await log_in(admin, daemon.services.dashboard_token)
        clock.at += daemon.services.sessions.lifetime - 1
        assert (await admin.get("/v1/vms")).status_code == 200
        clock.at += 1
        status, _, message = error_of(await admin.get("/v1/vms"))
        assert status == 401 and "log in again" in message
        assert (await admin.get("/auth/session")).status_code == 401


@pytest.mark.parametrize("csrf", [None, "", "wrong"])
async def test_a_change_without_the_sessions_csrf_secret_is_a_403(
    site: App, daemon: Daemon, csrf: str | None
) -> None:
    projects_and_vms(daemon)
    async with browser(site) as admin:
        await log_in(admin, daemon.services.dashboard_token)
        headers = {} if csrf is None else {"X-CSRF-Token": csrf}
        for method, path in (("POST", "/v1/vms/admins/start"), ("DELETE", "/v1/vms/admins")):
            answer = await admin.request(method, path, headers=headers)
            assert error_of(answer) == (
                403, "forbidden",
                "The request has no valid X-CSRF-Token header; reload the dashboard and try "
                "again.",
            )  # fmt: skip
        answer = await admin.post(
            "/auth/tickets", json={"purpose": "console", "vm": "admins"}, headers=headers
        )
        assert error_of(answer)[:2] == (403, "forbidden")
    assert daemon.store.vms.get("admins").state is VmState.STOPPED


async def test_with_the_csrf_secret_a_change_reaches_the_api(site: App, daemon: Daemon) -> None:
    projects_and_vms(daemon)
    async with browser(site) as admin:
        session = await log_in(admin, daemon.services.dashboard_token)
        csrf = {"X-CSRF-Token": session["csrf"]}
        answer = await admin.patch("/v1/vms/admins/limits", json={"cpus": 0}, headers=csrf)
        assert error_of(answer)[:2] == (400, "invalid_request")  # the API's own answer
        answer = await admin.delete("/v1/vms/admins", headers=csrf)
        assert answer.status_code == 204
    assert daemon.store.vms.find("admins") is None


async def test_a_write_from_another_origin_is_refused(site: App, daemon: Daemon) -> None:
    async with browser(site) as admin:
        session = await log_in(admin, daemon.services.dashboard_token)
        headers = {"X-CSRF-Token": session["csrf"], "Origin": "http://evil.example"}
        status, _, message = error_of(await admin.post("/v1/vms/x/start", headers=headers))
        assert status == 403 and "Origin http://evil.example may not use" in message
        login = await admin.post(
            "/auth/login", json={"token": "x"}, headers={"Origin": "http://evil.example"}
        )
        assert login.status_code == 403


async def test_logout_ends_the_session(site: App, daemon: Daemon) -> None:
    async with browser(site) as admin:
        session = await log_in(admin, daemon.services.dashboard_token)
        stolen = admin.cookies["bungalow_session"]
        forged = await admin.post("/auth/logout", headers={"Origin": "http://evil.example"})
        assert error_of(forged)[0] == 403
        assert error_of(await admin.post("/auth/logout"))[0] == 403  # no CSRF secret
        assert (await admin.get("/v1/vms")).status_code == 200  # still logged in
        answer = await admin.post("/auth/logout", headers={"X-CSRF-Token": session["csrf"]})
        assert answer.status_code == 204
        assert 'bungalow_session=""' in answer.headers["set-cookie"]
    async with browser(site) as thief:
        thief.cookies.set("bungalow_session", stolen)
        assert (await thief.get("/v1/vms")).status_code == 401


async def test_a_login_link_works_once(site: App, daemon: Daemon) -> None:
    ticket = daemon.services.sessions.issue_login()
    async with browser(site) as admin:
        answer = await admin.get(f"/login?ticket={ticket}")
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
        assert (await admin.get("/auth/session")).json()["role"] == "admin"
    async with browser(site) as again:
        answer = await again.get(f"/login?ticket={ticket}")
        assert answer.status_code == 401 and "run <code>bungalow dashboard</code>" in answer.text
        assert "set-cookie" not in answer.headers
        assert (await again.get("/login")).status_code == 401


async def test_tickets_name_a_purpose_and_a_vm(site: App, daemon: Daemon) -> None:
    projects_and_vms(daemon)
    async with browser(site) as admin:
        session = await log_in(admin, daemon.services.dashboard_token)
        csrf = {"X-CSRF-Token": session["csrf"]}
        answer = await admin.post(
            "/auth/tickets", json={"purpose": "exec", "vm": "mine"}, headers=csrf
        )
        assert set(answer.json()) == {"ticket", "expires_in"}
        assert answer.json()["expires_in"] == 30
        for body in ({"purpose": "shell", "vm": "mine"}, {"purpose": "exec"}):
            answer = await admin.post("/auth/tickets", json=body, headers=csrf)
            assert error_of(answer)[:2] == (400, "invalid_request")
        answer = await admin.post(
            "/auth/tickets", json={"purpose": "vnc", "vm": "mine"}, headers=csrf
        )
        assert error_of(answer)[0] == 400  # a micro VM has no screen: the screen's sentence
        answer = await admin.post(
            "/auth/tickets", json={"purpose": "console", "vm": "ghost"}, headers=csrf
        )
        assert error_of(answer)[:2] == (404, "vm_not_found")


async def test_the_socket_keeps_its_rules(daemon: Daemon) -> None:
    """The socket's app is untouched by the dashboard: no cookie makes anyone admin of a
    project's token, and the dashboard's door is the admin's."""
    tokens = projects_and_vms(daemon)
    transport = httpx.ASGITransport(app=app_for(daemon))
    headers = {"Authorization": f"Bearer {tokens['p1']}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bungalowd") as member:
        assert error_of(await member.post("/v1/dashboard", headers=headers))[0] == 403
        answer = await member.get("/v1/dashboard/token", headers=headers)
        assert error_of(answer)[0] == 403


async def test_the_api_describes_itself_on_the_dashboard_too(site: App, daemon: Daemon) -> None:
    async with browser(site) as admin:
        assert (await admin.get("/openapi.json")).status_code == 401  # behind the login
        await log_in(admin, daemon.services.dashboard_token)
        answer = await admin.get("/openapi.json")
        assert answer.status_code == 200 and "/v1/vms" in answer.json()["paths"]
