"""A micro VM driven from the dashboard in headless Chromium, as a person would drive it.

One daemon and one VM (``web1``) for the module; the dialog test makes and deletes a
second one as a project. What the pages did is checked through the CLI (``inspect``,
``exec``), not through the pages themselves. Each page is saved as a screenshot.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Locator, Page, expect
from websockets.exceptions import ConnectionClosed

from tests.web.conftest import LoggedIn
from tests.web.support import BOOT_TIMEOUT_MS, SENTENCE, Dashboard, error_message, shoot

pytestmark = pytest.mark.vm

VM = "web1"


@pytest.fixture(scope="module")
def vm(dashboard: Dashboard) -> str:
    dashboard.env.run("launch", VM, "--memory", "256M")
    return VM


@pytest.fixture(scope="module")
def project_token(dashboard: Dashboard) -> str:
    return dashboard.env.run("project", "create", "webp").stdout.strip()


def _tab(page: Page, dashboard: Dashboard, tab: str) -> Locator:
    page.goto(f"{dashboard.origin}/ui/#/vms/{VM}/{tab}")
    panel = page.get_by_test_id(f"panel-{tab}")
    expect(panel).to_be_visible()
    return panel


def _terminal_lines(terminal: Locator) -> list[str]:
    """What an xterm.js terminal shows, line by line (its DOM renderer's rows)."""
    return [line.strip() for line in terminal.locator(".xterm-rows > div").all_inner_texts()]


def _line(terminal: Locator, text: str) -> Locator:
    """The terminal's lines that are ``text`` and nothing else (not the command echoing it)."""
    exact = re.compile(rf"^\s*{re.escape(text)}\s*$")
    return terminal.locator(".xterm-rows > div").filter(has_text=exact)


def _type_in(terminal: Locator, text: str) -> None:
    terminal.click()
    terminal.page.keyboard.type(text)
    terminal.page.keyboard.press("Enter")


def _inspect(dashboard: Dashboard, name: str) -> dict[str, object]:
    return dict(json.loads(dashboard.env.run("inspect", name).stdout))


def test_the_vm_list_shows_the_vm_running(
    dashboard: Dashboard, vm: str, logged_in: LoggedIn
) -> None:
    page = logged_in(dashboard)
    row = page.locator(f"tr[data-vm='{vm}']")
    expect(row).to_have_attribute("data-state", "running")
    expect(row.get_by_test_id("vm-state")).to_have_text("running")
    shoot(page, "vms")
    row.get_by_test_id("vm-link").click()
    expect(page.get_by_test_id("vm-name")).to_have_text(vm)
    expect(page.get_by_test_id("vm-facts")).to_be_visible()
    shoot(page, "vm-overview")


def test_a_vm_made_in_the_dialog_runs_and_its_project_sees_only_it(
    dashboard: Dashboard, vm: str, project_token: str, logged_in: LoggedIn
) -> None:
    page = logged_in(dashboard, project_token)
    expect(page.get_by_test_id("session-role")).to_contain_text("webp")
    page.get_by_test_id("nav-new").click()
    page.get_by_test_id("create-name").fill("dlg")
    page.get_by_test_id("create-memory").fill("256M")
    expect(page.get_by_test_id("create-image")).to_have_value("debian-12")
    shoot(page, "new")
    page.get_by_test_id("create-submit").click()
    expect(page.get_by_test_id("vm-detail-state")).to_have_text("running", timeout=BOOT_TIMEOUT_MS)
    assert _inspect(dashboard, "dlg")["state"] == "running"
    assert _inspect(dashboard, "dlg")["project"] == "webp"
    # Its list has its own VM and not the admin's.
    page.get_by_test_id("nav-vms").click()
    expect(page.locator("tr[data-vm='dlg']")).to_be_visible()
    expect(page.locator(f"tr[data-vm='{vm}']")).to_have_count(0)
    page.goto(f"{dashboard.origin}/ui/#/vms/{vm}")
    expect(page.get_by_test_id("view-error")).to_have_text(SENTENCE)
    # Deleting asks first, and is done once confirmed.
    page.goto(f"{dashboard.origin}/ui/#/vms/dlg")
    page.get_by_test_id("vm-delete").click()
    page.get_by_test_id("confirm-delete").click()
    expect(page).to_have_url(re.compile(r"/ui/#/vms$"), timeout=120_000)
    expect(page.get_by_test_id("vm-table")).to_be_visible()
    expect(page.locator("tr[data-vm='dlg']")).to_have_count(0)
    names = [v["name"] for v in json.loads(dashboard.env.run("ls", "--json").stdout)]
    assert "dlg" not in names


def test_the_serial_console_echoes_and_survives_a_reconnect(
    dashboard: Dashboard, vm: str, logged_in: LoggedIn
) -> None:
    page = logged_in(dashboard)
    panel = _tab(page, dashboard, "console")
    expect(panel.get_by_test_id("console-status")).to_have_attribute("data-state", "open")
    terminal = panel.get_by_test_id("console-terminal")
    # The login the daemon puts on ttyS0 may come up after the agent: wait for its prompt,
    # as a person would, before typing (getty drops what was typed before it).
    _type_in(terminal, "")
    expect(terminal.locator(".xterm-rows")).to_contain_text(f"root@{vm}:~#", timeout=120_000)
    _type_in(terminal, "echo hi")
    expect(_line(terminal, "hi").first).to_be_visible()
    assert "hi" in _terminal_lines(terminal)
    shoot(page, "vm-console")
    panel.get_by_test_id("console-reconnect").click()
    expect(panel.get_by_test_id("console-status")).to_have_attribute("data-state", "open")
    assert "hi" in _terminal_lines(terminal)  # the scrollback stays
    _type_in(terminal, "echo again=$((40+2))")
    expect(_line(terminal, "again=42").first).to_be_visible()


def test_a_shell_runs_a_command(dashboard: Dashboard, vm: str, logged_in: LoggedIn) -> None:
    page = logged_in(dashboard)
    panel = _tab(page, dashboard, "shell")
    expect(panel.get_by_test_id("shell-status")).to_have_attribute("data-state", "open")
    terminal = panel.get_by_test_id("shell-terminal")
    expect(terminal.locator(".xterm-rows")).to_contain_text(f"root@{vm}")
    _type_in(terminal, "tty; echo the_answer=$((6*7))")
    expect(_line(terminal, "the_answer=42").first).to_be_visible()
    expect(terminal.locator(".xterm-rows")).to_contain_text("/dev/pts/")
    shoot(page, "vm-shell")


def test_a_snapshot_is_taken_and_restored(
    dashboard: Dashboard, vm: str, logged_in: LoggedIn
) -> None:
    page = logged_in(dashboard)
    panel = _tab(page, dashboard, "snapshots")
    dashboard.env.run("exec", vm, "--", "touch", "/root/before")
    panel.get_by_test_id("snapshot-name").fill("s1")
    panel.get_by_test_id("snapshot-create").click()
    row = panel.locator("tr[data-snapshot='s1']")
    expect(row).to_be_visible(timeout=120_000)
    shoot(page, "vm-snapshots")
    dashboard.env.run("exec", vm, "--", "touch", "/root/after")
    row.get_by_test_id("snapshot-restore").click()
    ask = panel.get_by_test_id("snapshot-confirm")
    expect(ask).to_contain_text(f"Restore {vm} to s1? What it did since is lost.")
    ask.get_by_test_id("snapshot-confirm-cancel").click()  # kept: nothing happens
    expect(ask).to_be_hidden()
    assert "after" in dashboard.env.run("exec", vm, "--", "ls", "/root").stdout.split()
    row.get_by_test_id("snapshot-restore").click()
    ask.get_by_test_id("snapshot-confirm-yes").click()
    expect(panel.get_by_test_id("snapshot-done")).to_contain_text(
        f"{vm} is back at s1", timeout=120_000
    )
    listing = dashboard.env.run("exec", vm, "--", "ls", "/root").stdout.split()
    assert "before" in listing and "after" not in listing
    assert _inspect(dashboard, vm)["state"] == "running"


def test_a_limit_changed_in_the_page_is_what_inspect_says(
    dashboard: Dashboard, vm: str, logged_in: LoggedIn
) -> None:
    page = logged_in(dashboard)
    panel = _tab(page, dashboard, "limits")
    panel.get_by_test_id("limit-cpu-weight").fill("250")
    panel.get_by_test_id("limit-cpu-cap").fill("0.5")
    panel.get_by_test_id("limits-apply").click()
    expect(panel.get_by_test_id("limits-done")).to_contain_text("cpu_weight")
    shoot(page, "vm-limits")
    limits = _inspect(dashboard, vm)["limits"]
    assert isinstance(limits, dict)
    assert limits["cpu_weight"] == 250 and limits["cpu_cap"] == 0.5
    # A refused value gets the API's sentence where it was typed, and changes nothing.
    panel.get_by_test_id("limit-cpu-weight").fill("0")
    panel.get_by_test_id("limits-apply").click()
    expect(panel.get_by_test_id("limits-error")).to_have_text(SENTENCE)
    assert _inspect(dashboard, vm)["limits"] == limits


def test_the_events_tab_shows_the_vm_events_as_they_happen(
    dashboard: Dashboard, vm: str, logged_in: LoggedIn
) -> None:
    page = logged_in(dashboard)
    panel = _tab(page, dashboard, "events")
    events = panel.get_by_test_id("events-list")
    expect(events.locator("[data-kind='created']")).to_have_count(1)
    before = events.locator("[data-kind='paused']").count()
    dashboard.env.run("pause", vm)
    dashboard.env.run("resume", vm)
    # Live: the page is not reloaded.
    expect(events.locator("[data-kind='paused']")).to_have_count(before + 1)
    expect(events.locator("[data-kind='resumed']").first).to_be_visible()
    shoot(page, "vm-events")


#: What each host-wide page shows once it has loaded, with web1 running.
HOST_PAGES = {
    # The memory table (GET /v1/overhead, drawn after the use table) names the VM.
    "host": f"[data-testid=host-memory-vm][data-vm='{VM}']",
    "sprawl": "[data-testid=sprawl-empty], [data-testid=sprawl-table]",
    "costs": f"[data-testid=costs-row]:has-text('{VM}')",
}


@pytest.mark.parametrize("name", list(HOST_PAGES))
def test_each_host_wide_page_shows_without_an_error(
    dashboard: Dashboard, vm: str, logged_in: LoggedIn, name: str
) -> None:
    page = logged_in(dashboard)
    page.get_by_test_id(f"nav-{name}").click()
    expect(page.locator(HOST_PAGES[name]).first).to_be_visible()
    expect(page.get_by_test_id("view-error")).to_have_count(0)
    shoot(page, name)


def test_a_console_ticket_works_once_for_its_purpose_and_from_the_dashboard_origin(
    dashboard: Dashboard, vm: str
) -> None:
    console = f"/v1/vms/{vm}/console?ticket="
    with dashboard.session() as session:
        forged = session.ticket("console", vm)["ticket"]
        assert (
            dashboard.refusal_of(
                console + forged, origin="http://evil.example", cookie=session.cookie
            )
            == 4403
        )
        ticket = session.ticket("console", vm)["ticket"]
        with dashboard.websocket(console + ticket, cookie=session.cookie) as socket:
            socket.send(b"\r")
            seen = b""
            while b"root@" not in seen:
                seen += bytes(socket.recv(timeout=60))
        assert dashboard.refusal_of(console + ticket, cookie=session.cookie) == 4401
        shell = session.ticket("exec", vm)["ticket"]
        assert dashboard.refusal_of(console + shell, cookie=session.cookie) == 4401
    with dashboard.session() as session:  # a ticket ends with its session
        ticket = session.ticket("console", vm)["ticket"]
        session.http.post("/auth/logout", headers={"X-CSRF-Token": session.csrf})
        assert dashboard.refusal_of(console + ticket, cookie=session.cookie) == 4401
    with dashboard.session() as session:  # and so does a console left open
        ticket = session.ticket("console", vm)["ticket"]
        with dashboard.websocket(console + ticket, cookie=session.cookie) as socket:
            session.http.post("/auth/logout", headers={"X-CSRF-Token": session.csrf})
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    socket.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_a_micro_vm_has_no_screen_to_open(
    dashboard: Dashboard, vm: str, logged_in: LoggedIn
) -> None:
    page = logged_in(dashboard)
    expect(_tab(page, dashboard, "screen").get_by_test_id("screen-none")).to_contain_text(
        "no screen"
    )
    with dashboard.session() as session:
        reply = session.http.post(
            "/auth/tickets",
            json={"purpose": "vnc", "vm": vm},
            headers={"X-CSRF-Token": session.csrf},
        )
        assert reply.status_code == 400, reply.text
        assert SENTENCE.match(error_message(reply))


def test_live_samples_carry_the_vm_markers(dashboard: Dashboard, vm: str) -> None:
    """The VM list shows NOISY and held markers from /live's samples, fetching nothing."""
    with dashboard.session() as session, session.http.stream("GET", "/live") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "metrics":
                sample = json.loads(line.removeprefix("data: "))
                if sample["vm"] == vm:
                    break
        assert sample["noisy_for"] == [] and sample["throttled"] == []
        assert sample["cpu.time"] > 0
