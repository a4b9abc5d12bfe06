"""The wire format, from bytes to errors and events, and every error code through a Client."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from bungalow import errors
from bungalow.client import routes, wire
from bungalow.client.http import Client
from bungalow.paths import DataDir
from tests.client.answers import Daemon, error_answer, exit_event, ndjson_answer, output


def test_error_for_names_the_class_of_the_code_in_the_body() -> None:
    body = {"error": {"code": "snapshot_not_found", "message": "There is no snapshot x."}}
    error = wire.error_for(httpx.Response(404, json=body))
    assert type(error) is errors.SnapshotNotFoundError
    assert error.message == "There is no snapshot x."


def test_error_for_a_body_without_a_code_falls_back_to_the_class_of_the_status() -> None:
    page = wire.error_for(httpx.Response(404, text="<html>nope</html>"))
    assert type(page) is errors.NotFoundError
    assert page.message == "bungalowd answered 404: <html>nope</html>"
    empty = wire.error_for(httpx.Response(503))
    assert (type(empty), empty.message) == (errors.DaemonError, "bungalowd answered 503.")
    detail = wire.error_for(httpx.Response(422, json={"detail": [{"msg": "field required"}]}))
    assert type(detail) is errors.BungalowError and "field required" in detail.message


def test_parse_event_reads_one_line_and_raises_an_error_event() -> None:
    assert wire.parse_event("  \n") is None
    assert wire.parse_event('{"type": "progress", "fraction": 0.5}') == {
        "type": "progress",
        "fraction": 0.5,
    }
    line = json.dumps({"type": "error", "code": "agent_error", "message": "The agent left."})
    with pytest.raises(errors.AgentError, match=r"^The agent left\.$"):
        wire.parse_event(line)


def test_exec_events_are_decoded_from_base64_and_the_body_carries_stdin() -> None:
    assert wire.decode_exec_event(output("stderr", b"\xff\x00")) == {
        "type": "stderr",
        "data": b"\xff\x00",
    }
    assert wire.decode_exec_event(exit_event(3)) == exit_event(3)
    body = wire.exec_body(["cat"], b"in\n", {"cwd": "/tmp", "timeout": 2.0})
    assert body == {"argv": ["cat"], "cwd": "/tmp", "timeout": 2.0, "stdin": "aW4K"}
    assert "stdin" not in wire.exec_body(["true"], None, {})


def test_response_value_is_json_text_or_none() -> None:
    assert wire.response_value(httpx.Response(200, json={"a": 1})) == {"a": 1}
    assert wire.response_value(httpx.Response(200, text="log line\n")) == "log line\n"
    assert wire.response_value(httpx.Response(204)) is None


def test_a_token_becomes_a_bearer_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNGALOW_TOKEN", "bgw_from_env")
    assert wire.auth_headers(None) == {"Authorization": "Bearer bgw_from_env"}
    assert wire.auth_headers("bgw_given") == {"Authorization": "Bearer bgw_given"}
    monkeypatch.delenv("BUNGALOW_TOKEN")
    assert wire.auth_headers(None) == {}


def test_calls_send_only_what_they_set() -> None:
    assert routes.get_vm("web").options == {}
    assert routes.stop_vm("web", 5.0).options == {"json": {"timeout": 5.0}}
    assert routes.costs("owner", "2h", None).options == {"params": {"by": "owner", "since": "2h"}}
    assert routes.remove_project("p", orphan_vms=False).options == {}
    assert routes.events_log("web", None, 10).params == {"limit": 10, "vm": "web"}


@pytest.mark.parametrize("code", list(errors.ERROR_CLASSES))
def test_every_error_code_comes_back_from_the_daemon_as_its_class(code: str) -> None:
    raised = errors.ERROR_CLASSES[code]("It broke; do this instead.")
    daemon = Daemon().on("GET", "/v1/vms/web", error_answer(raised))
    with daemon.client() as api, pytest.raises(errors.BungalowError) as caught:
        api.get_vm("web")
    assert type(caught.value) is type(raised)
    assert caught.value.message == "It broke; do this instead."


def test_an_error_event_ends_a_stream_as_its_class_after_the_output_before_it() -> None:
    failure = {"type": "error", "code": "agent_error", "message": "The guest agent went away."}
    events = [output("stdout", b"partial\n"), failure, exit_event(0)]
    daemon = Daemon().on("POST", "/v1/vms/web/exec", ndjson_answer(events))
    seen = []
    with daemon.client() as api, pytest.raises(errors.AgentError, match="went away"):
        for event in api.exec_events("web", ["true"]):
            seen.append(event)
    assert seen == [{"type": "stdout", "data": b"partial\n"}]


def test_a_failed_stream_raises_before_any_event() -> None:
    missing = errors.VmNotFoundError("There is no VM named web.")
    daemon = Daemon().on("POST", "/v1/vms/web/exec", error_answer(missing))
    with daemon.client() as api, pytest.raises(errors.VmNotFoundError, match="no VM named web"):
        next(api.exec_events("web", ["true"]))


def test_an_unreachable_daemon_is_a_daemon_error_naming_its_log(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("No such file or directory", request=request)

    api = Client(DataDir(tmp_path), transport=httpx.MockTransport(refuse))
    with api, pytest.raises(errors.DaemonError, match=r"bungalowd\.log") as caught:
        api.list_vms()
    assert "Lost the connection to bungalowd" in caught.value.message


def test_the_client_sends_the_token_and_the_request_the_route_describes() -> None:
    daemon = Daemon().on("POST", "/v1/vms/web/stop", httpx.Response(200, json={"state": "x"}))
    with Client(transport=httpx.MockTransport(daemon), token="bgw_secret") as api:
        api.stop_vm("web", timeout=5)
    (request,) = daemon.requests
    assert request.headers["authorization"] == "Bearer bgw_secret"
    assert json.loads(request.content) == {"timeout": 5}


def test_only_what_cannot_have_been_acted_on_is_sent_again() -> None:
    refused = httpx.ConnectError("refused")
    reset = httpx.ReadError("reset")
    assert wire.worth_retrying("POST", refused)  # nothing reached a daemon
    assert wire.worth_retrying("GET", reset)  # a read changes nothing
    assert not wire.worth_retrying("POST", reset)  # it may have made the VM
    assert not wire.worth_retrying("DELETE", httpx.RemoteProtocolError("gone"))
    assert not wire.worth_retrying("GET", httpx.ReadTimeout("slow"))
