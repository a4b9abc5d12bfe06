"""The dashboard's listener in a real bungalowd (server/dashboard.py), no VM: opened by
``bungalow dashboard`` or at start, its login link, ``/live``, websocket refusals, a taken
port, TLS with the fingerprint printed, and closed with the daemon."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed

from bungalow.daemon.server import dashboard_tls
from tests.conftest import Env
from tests.support import free_port, port_taken, wait_until


def _configure(env: Env, text: str) -> None:
    with (env.home / "config.toml").open("a") as config:
        config.write(text)


@pytest.fixture
def opened(installation: Env) -> Iterator[tuple[Env, str]]:
    """A daemon with the dashboard on a free port, opened by `bungalow dashboard` (off in
    the config: the admin asked for it); the printed URL."""
    _configure(installation, f'[dashboard]\nlisten = "127.0.0.1:{free_port()}"\n')
    url = installation.run("dashboard").stdout.strip()
    yield installation, url


def _origin(url: str) -> str:
    return url.split("/login")[0]


def test_a_dashboard_opened_at_run_time_comes_back_after_a_daemon_kill(
    opened: tuple[Env, str],
) -> None:
    """Killing is normal: the next daemon opens it again (sessions are gone: log in anew);
    a daemon stopped on purpose leaves it closed."""
    env, url = opened
    origin = _origin(url)
    daemon = env.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until("the daemon to die", lambda: not Path(f"/proc/{daemon}").exists())
    env.run("ls")  # starts the next daemon
    assert httpx.get(f"{origin}/auth/session").status_code == 401  # listening, logged out
    daemon = env.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGTERM)
    wait_until("the daemon to stop", lambda: not Path(f"/proc/{daemon}").exists())
    env.run("ls")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{origin}/auth/session")


def test_bungalow_dashboard_prints_a_login_link_that_works_once(
    opened: tuple[Env, str],
) -> None:
    env, url = opened
    origin = _origin(url)
    assert url.startswith("http://127.0.0.1:") and "/login?ticket=" in url
    with httpx.Client() as browser:
        answer = browser.get(url)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
        session = browser.get(f"{origin}/auth/session").json()
        assert session["role"] == "admin"
        assert browser.get(f"{origin}/v1/vms").json() == []
    with httpx.Client() as thief:
        answer = thief.get(url)
        assert answer.status_code == 401 and "bungalow dashboard" in answer.text
    shown = json.loads(env.run("dashboard", "--json").stdout)
    assert set(shown) == {"url", "fingerprint"} and shown["fingerprint"] is None
    assert _origin(shown["url"]) == origin and shown["url"] != url
    token = env.run("dashboard", "--token").stdout.strip()
    assert token == (env.home / "dashboard.token").read_text().strip()


def test_live_sends_the_vm_list_first(opened: tuple[Env, str]) -> None:
    _env, url = opened
    with httpx.Client() as browser:
        browser.get(url)
        with browser.stream("GET", f"{_origin(url)}/live", timeout=30) as live:
            assert live.headers["content-type"].startswith("text/event-stream")
            lines = live.iter_lines()
            assert next(lines) == "event: vms"
            assert next(lines) == "data: []"
    with httpx.Client() as stranger:
        assert stranger.get(f"{_origin(url)}/live").status_code == 401


#: A websocket's refusals: the Origin, the query, the close code, the sentence's start.
REFUSALS = [
    ("http://evil.example", "?ticket=x", 4403, "The Origin http://evil.example may not"),
    (None, "", 4401, "The ticket is missing, used or unknown"),
    (None, "?ticket=forged", 4401, "The ticket is missing, used or unknown"),
]


def test_a_websocket_without_its_ticket_or_from_elsewhere_is_refused(
    opened: tuple[Env, str],
) -> None:
    _env, url = opened
    own = _origin(url)
    for origin, query, code, words in REFUSALS:
        for path in ("console", "exec/ws", "vnc/ws"):
            address = own.replace("http://", "ws://") + f"/v1/vms/web/{path}{query}"
            with ws_client.connect(address, origin=origin or own, open_timeout=30) as websocket:  # type: ignore[arg-type]
                error = json.loads(websocket.recv(timeout=30))
                assert error["type"] == "error" and error["message"].startswith(words), path
                with pytest.raises(ConnectionClosed) as closed:
                    websocket.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code, path


def test_a_taken_port_is_a_sentence_not_a_crash(installation: Env) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        _configure(installation, f'[dashboard]\nenabled = true\nlisten = "127.0.0.1:{port}"\n')
        answer = installation.run("dashboard", check=False)
        assert answer.returncode != 0
        assert answer.stderr.strip().endswith(
            f"The dashboard cannot listen on 127.0.0.1:{port} (Address already in use); free "
            "that port, or set another with listen in the [dashboard] section of config.toml "
            "and restart bungalowd."
        )
        log = (installation.home / "bungalowd.log").read_text()
        assert f"The dashboard cannot listen on 127.0.0.1:{port}" in log
        assert installation.run("ls").returncode == 0  # the daemon runs on
    url = installation.run("dashboard").stdout.strip()  # freed: it opens now
    assert f"127.0.0.1:{port}/login" in url


def test_with_tls_the_fingerprint_is_printed_and_matches_the_listeners(
    installation: Env, tmp_path: Path
) -> None:
    cert, key = dashboard_tls.self_signed(tmp_path, "127.0.0.1")
    port = free_port()
    _configure(
        installation,
        f'[dashboard]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
        f'tls_cert = "{cert}"\ntls_key = "{key}"\n',
    )
    url, printed = installation.run("dashboard").stdout.strip().splitlines()
    assert url.startswith(f"https://127.0.0.1:{port}/login?ticket=")
    served = ssl.get_server_certificate(("127.0.0.1", port))
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest().upper()
    pairs = ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    assert printed == f"TLS certificate SHA-256 fingerprint: {pairs}"
    trusted = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=trusted) as browser:
        answer = browser.get(url)
        assert answer.status_code == 303 and "; Secure" in answer.headers["set-cookie"]
        assert browser.get(f"https://127.0.0.1:{port}/auth/session").status_code == 200


def test_a_self_signed_pair_is_made_once_for_the_owner(tmp_path: Path) -> None:
    cert, key = dashboard_tls.self_signed(tmp_path, "192.0.2.7")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    fingerprint = dashboard_tls.fingerprint(cert)
    assert len(fingerprint) == 95 and fingerprint.count(":") == 31
    assert dashboard_tls.self_signed(tmp_path, "192.0.2.7") == (cert, key)
    assert dashboard_tls.fingerprint(cert) == fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dashboard.crt", "dashboard.key"]


def test_the_listener_closes_with_the_daemon(opened: tuple[Env, str]) -> None:
    env, url = opened
    port = int(_origin(url).rsplit(":", 1)[1])
    assert port_taken(port)
    env.shutdown()
    wait_until("the dashboard's port to be free", lambda: not port_taken(port), timeout=30)
