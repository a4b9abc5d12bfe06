"""The dashboard's websockets on a real VM: the serial console, an interactive exec and
the VNC bridge, each opened once by its ticket (api/dashboard/auth.py, vnc.py).

One pc VM (debian-12 on q35 with the agent) serves the module: it has a serial
console, runs commands, and has the display the VNC bridge needs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.conftest import Env
from tests.screens import VncRefused, vnc_login_over
from tests.support import free_port

pytestmark = pytest.mark.vm


class Dashboard:
    """A browser logged in as the admin: its HTTP client, origin and CSRF secret."""

    def __init__(self, env: Env) -> None:
        url = env.run("dashboard").stdout.strip()
        self.origin = url.split("/login")[0]
        self.http = httpx.Client(base_url=self.origin, timeout=120)
        self.http.get(url)
        self.csrf = self.http.get("/auth/session").json()["csrf"]

    def ticket(self, purpose: str, vm: str = "desk") -> dict[str, str]:
        answer = self.http.post(
            "/auth/tickets",
            json={"purpose": purpose, "vm": vm},
            headers={"X-CSRF-Token": self.csrf},
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def websocket(self, path: str, ticket: str, **options: object) -> ClientConnection:
        address = self.origin.replace("http://", "ws://") + f"/v1/vms/desk/{path}?ticket={ticket}"
        options.setdefault("origin", self.origin)
        return ws_client.connect(address, open_timeout=60, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def dashboard(bw_module: Env) -> Iterator[Dashboard]:
    with (bw_module.home / "config.toml").open("a") as config:
        config.write(f'[dashboard]\nlisten = "127.0.0.1:{free_port()}"\n')
    bw_module.run("launch", "desk", "--profile", "pc")
    browser = Dashboard(bw_module)
    yield browser
    browser.http.close()


def _read_until(websocket: ClientConnection, wanted: bytes) -> bytes:
    seen = b""
    while wanted not in seen:
        frame = websocket.recv(timeout=120)
        assert isinstance(frame, bytes)
        seen += frame
    return seen


def _refused(websocket: ClientConnection) -> tuple[int, str]:
    """The close code and sentence of a refused websocket."""
    message = json.loads(websocket.recv(timeout=60))
    with pytest.raises(ConnectionClosed) as closed:
        websocket.recv(timeout=60)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, message["message"]


def test_the_console_bridges_the_serial_port_once_per_ticket(dashboard: Dashboard) -> None:
    ticket = dashboard.ticket("console")["ticket"]
    with dashboard.websocket("console", ticket) as console:
        console.send(b"\r")
        _read_until(console, b"root@desk:~# ")  # the login the daemon put on the serial port
        console.send(b"echo dash$((6*7))board\r")
        _read_until(console, b"dash42board")  # the shell's answer, not the echoed line
    with dashboard.websocket("console", ticket) as again:
        code, message = _refused(again)
    assert code == 4401 and "used" in message


def test_a_ticket_opens_only_its_own_purpose_and_vm(dashboard: Dashboard) -> None:
    exec_ticket = dashboard.ticket("exec")["ticket"]
    with dashboard.websocket("console", exec_ticket) as wrong:
        code, message = _refused(wrong)
    assert code == 4401 and "is for the exec of desk, not the console of desk" in message
    other = dashboard.ticket("console")["ticket"]
    address = dashboard.origin.replace("http://", "ws://") + f"/v1/vms/other/console?ticket={other}"
    with ws_client.connect(address, origin=dashboard.origin, open_timeout=60) as elsewhere:
        assert _refused(elsewhere)[0] == 4401
    forged = dashboard.ticket("console")["ticket"]
    with dashboard.websocket("console", forged, origin="http://evil.example") as forgery:
        code, _ = _refused(forgery)
    assert code == 4403


def test_exec_runs_a_command_in_a_terminal(dashboard: Dashboard) -> None:
    ticket = dashboard.ticket("exec")["ticket"]
    with dashboard.websocket("exec/ws", ticket) as shell:
        shell.send(json.dumps({"argv": ["sh", "-c", "stty size; read x; echo got $x"],
                               "tty": True, "rows": 30, "cols": 100}))  # fmt: skip
        shell.send(b"typed\n")
        output, ended = b"", None
        while ended is None:
            event = json.loads(shell.recv(timeout=120))
            if event["type"] == "exit":
                ended = event
            else:
                assert event["type"] == "stdout", event
                output += base64.b64decode(event["data"])
    assert b"30 100" in output and b"got typed" in output
    assert ended["exit_code"] == 0


def test_vnc_reaches_the_screen_with_the_tickets_password_once(dashboard: Dashboard) -> None:
    answer = dashboard.ticket("vnc")
    assert len(answer["password"]) == 8
    with dashboard.websocket("vnc/ws", answer["ticket"], subprotocols=["binary"]) as screen:
        assert screen.subprotocol == "binary"
        session = vnc_login_over(_Stream(screen), answer["password"])
    assert (session.width, session.height) == (720, 400)
    # The websocket ended: its password no longer lets anyone in.
    again = dashboard.ticket("vnc")
    with dashboard.websocket("vnc/ws", again["ticket"]) as viewer, pytest.raises(VncRefused):
        vnc_login_over(_Stream(viewer), answer["password"])


class _Stream:
    """A websocket read and written as a socket's bytes (for the VNC login helper)."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket
        self.held = b""

    def recv(self, count: int) -> bytes:
        while not self.held:
            frame = self.websocket.recv(timeout=60)
            self.held += frame if isinstance(frame, bytes) else frame.encode()
        data, self.held = self.held[:count], self.held[count:]
        return data

    def sendall(self, data: bytes) -> None:
        self.websocket.send(data)


def test_live_follows_the_vms_their_events_and_metrics(dashboard: Dashboard) -> None:
    seen: dict[str, list[object]] = {"vms": [], "event": [], "metrics": []}
    with dashboard.http.stream("GET", "/live", timeout=60) as live:
        events = _server_sent_events(live.iter_lines())
        kind, first = next(events)
        assert kind == "vms" and [vm["name"] for vm in first] == ["desk"]
        paused = dashboard.http.post("/v1/vms/desk/pause", headers={"X-CSRF-Token": dashboard.csrf})
        assert paused.status_code == 200, paused.text
        try:
            for kind, data in events:
                seen[kind].append(data)
                states = [vm["state"] for vms in seen["vms"] for vm in vms]  # type: ignore[attr-defined]
                kinds = [event["kind"] for event in seen["event"]]  # type: ignore[index]
                if "paused" in states and kinds and seen["metrics"]:
                    break
        finally:
            dashboard.http.post("/v1/vms/desk/resume", headers={"X-CSRF-Token": dashboard.csrf})
    sample = seen["metrics"][0]
    assert sample["vm"] == "desk" and sample["cpu.time"] > 0  # type: ignore[index]
    assert all(event["vm"] == "desk" for event in seen["event"])  # type: ignore[index]


def _server_sent_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data as JSON) of each event of a text/event-stream; comments skipped."""
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind is not None:
            yield kind, json.loads(line.removeprefix("data: "))
            kind = None
