"""screenshot, vnc, send-keys and type against a mock daemon: what they send, write and print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bungalow.cli.main import main
from bungalow.errors import InvalidStateError
from tests.cli.test_commands_offline import bungalow, daemon, wide_console
from tests.client.answers import Daemon, error_answer, json_answer

__all__ = ["bungalow", "daemon", "wide_console"]  # the fixtures, shared

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def _png(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})


def test_screenshot_writes_the_png(daemon: Daemon, bungalow: Any, tmp_path: Path) -> None:
    daemon.on("GET", "/v1/vms/legacy/screenshot", _png)
    run = bungalow("screenshot", "legacy", str(tmp_path / "screen.png"))
    assert run.code == 0 and run.out == ""
    assert (tmp_path / "screen.png").read_bytes() == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["screen.png"]  # no partial file left


def test_screenshot_to_stdout(daemon: Daemon, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    daemon.on("GET", "/v1/vms/legacy/screenshot", _png)
    assert main(["screenshot", "legacy", "-"], connect=daemon.client) == 0
    assert capsysbinary.readouterr().out == PNG


def test_a_refused_screenshot_is_a_sentence_and_no_file(
    daemon: Daemon, bungalow: Any, tmp_path: Path
) -> None:
    refusal = InvalidStateError("Cannot take a screenshot: the VM legacy is stopped; start it.")
    daemon.on("GET", "/v1/vms/legacy/screenshot", error_answer(refusal))
    run = bungalow("screenshot", "legacy", str(tmp_path / "screen.png"))
    assert run.code == 1 and "the VM legacy is stopped" in run.err
    assert list(tmp_path.iterdir()) == []


def test_vnc_prints_the_endpoint_and_password(daemon: Daemon, bungalow: Any) -> None:
    endpoint = {
        "url": "vnc://127.0.0.1:5901",
        "host": "127.0.0.1",
        "port": 5901,
        "password": "aB3dE5fG",
        "expires_in": 300,
    }
    daemon.on("POST", "/v1/vms/legacy/vnc", json_answer(endpoint))
    assert bungalow("vnc", "legacy").out == "vnc://127.0.0.1:5901\npassword: aB3dE5fG\n"
    assert json.loads(bungalow("vnc", "legacy", "--json").out) == endpoint


def test_send_keys_and_type_send_what_was_asked(daemon: Daemon, bungalow: Any) -> None:
    daemon.on("POST", "/v1/vms/legacy/keys", httpx.Response(204))
    daemon.on("POST", "/v1/vms/legacy/type", httpx.Response(204))
    assert bungalow("send-keys", "legacy", "ctrl-alt-delete", "ret").code == 0
    assert daemon.body("POST", "/v1/vms/legacy/keys") == {"keys": ["ctrl-alt-delete", "ret"]}
    assert bungalow("type", "legacy", "--layout", "de", r"root\n").code == 0
    assert daemon.body("POST", "/v1/vms/legacy/type") == {"text": "root\n", "layout": "de"}
