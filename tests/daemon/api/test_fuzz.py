"""Schemathesis against a real bungalowd: every operation of its OpenAPI schema, fuzzed.

Each operation gets a bounded number of requests, schema-valid and schema-breaking
ones mixed (:data:`EXAMPLES`), sent over the daemon's Unix socket. Every answer
must be no 5xx, a status and content type the schema lists, a body of the schema's
shape, and a 4xx for a request the schema says is wrong; the daemon must log no
traceback. Schemathesis's "positive data accepted" check is left out: a value the
schema admits may still be refused with a 400 sentence, as the schema cannot say
everything (a size such as "9999T" matches its pattern but is over the bound, exec
needs ``argv`` or ``command``, an import path must be a file on the host). And a
"schema-breaking" query parameter that is a boolean or a number where text is asked
is not broken on the wire, where every query value is text: ``label=false`` is a
valid label filter, so such a case is not held to the "refused" check
(:func:`_breaks_on_the_wire`).

Two daemons:

- one with an empty image store of its own (:func:`test_every_operation`): no VM
  can be made, so every operation runs, quickly, bar ``POST /v1/images/build``,
  which would build an image (minutes, and network access); the networks it makes
  (as root: bridges, dnsmasq, rules) are removed before the daemon stops;
- one with the shared image and one VM up (:func:`test_on_a_vm`, marked ``vm``),
  all of its requests made with the token of a project whose quota (1 VM) that VM
  fills: the VM's own routes run with the path's name pinned to it, and creating a
  VM or a sandbox runs through the image, the plan and admission to a 409, with no
  boot. Left out there, as they boot a VM each or take the VM away: fork, clone,
  snapshots and their restore, start, stop, suspend, pause, resume and delete (the
  first daemon fuzzes them all, without a VM). A lease the fuzzer lets end may take
  the VM away too; the next test boots it again.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from tests.conftest import Env, _finish, _new_env
from tests.daemon.api.test_openapi import OPERATIONS
from tests.support import wait_until

BASE_URL = "http://bungalowd"
#: Requests per operation; FUZZ_EXAMPLES=300 for a longer run by hand.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
#: The VM the second daemon keeps up, and its project.
TARGET, PROJECT = "target", "fuzz"
#: The operations run against that VM (their ``{name}`` pinned to it).
ON_A_VM = [
    ("get", "/v1/vms/{name}"),
    ("get", "/v1/vms/{name}/files"),
    ("get", "/v1/vms/{name}/files/stat"),
    ("get", "/v1/vms/{name}/logs"),
    ("get", "/v1/vms/{name}/metrics"),
    ("patch", "/v1/vms/{name}/idle"),
    ("patch", "/v1/vms/{name}/limits"),
    ("post", "/v1/vms/{name}/exec"),
    ("post", "/v1/vms/{name}/lease"),
    ("post", "/v1/vms/{name}/lease/renew"),
    ("put", "/v1/vms/{name}/files"),
    ("put", "/v1/vms/{name}/files/tar"),
    ("post", "/v1/vms"),
    ("post", "/v1/sandboxes"),
]


class _UnixConnection(HTTPConnection):
    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__("bungalowd", **kwargs)
        self.path_to_socket = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(self.path_to_socket)


class _UnixPool(HTTPConnectionPool):
    def __init__(self, path: str) -> None:
        super().__init__("bungalowd")
        self.path_to_socket = path

    def _new_conn(self) -> HTTPConnection:
        return _UnixConnection(self.path_to_socket)


class _UnixAdapter(HTTPAdapter):
    """requests over bungalowd's Unix socket (schemathesis sends with requests)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.pool = _UnixPool(path)

    def get_connection_with_tls_context(self, *_args: Any, **_kwargs: Any) -> HTTPConnectionPool:
        return self.pool

    def close(self) -> None:
        self.pool.close()
        super().close()


def _session(env: Env) -> requests.Session:
    env.run("ls")  # starts the daemon
    http = requests.Session()
    http.mount(BASE_URL, _UnixAdapter(str(env.home / "bungalowd.sock")))
    return http


def _fuzz(
    operation: Any,
    http: requests.Session,
    *,
    headers: dict[str, str] | None = None,
    adjust: Callable[[schemathesis.Case], schemathesis.Case] = lambda case: case,
) -> None:
    """Send :data:`EXAMPLES` requests to ``operation``, schema-valid and not, each changed
    by ``adjust``; fail on the first answer a check refuses."""
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ).map(adjust)

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        excluded = [positive_data_acceptance]
        if not _breaks_on_the_wire(case):
            excluded.append(negative_data_rejection)
        case.call_and_validate(
            base_url=BASE_URL, session=http, headers=headers, excluded_checks=excluded
        )

    run()


def _on_the_wire(query: dict[str, Any]) -> dict[str, list[str]]:
    """The query as the daemon receives it: each name's values as text, in the order sent
    (a boolean or a number sent as the text that spells it; a value that encodes to nothing,
    such as an empty list, not there at all)."""
    encoded = requests.models.RequestEncodingMixin._encode_params(query)
    return urllib.parse.parse_qs(str(encoded), keep_blank_values=True)


def _breaks_on_the_wire(case: schemathesis.Case) -> bool:
    """Whether a case generated to break the schema still does once sent: the body, path
    or headers were made wrong, or a query value is wrong even as the text it is sent as."""
    if case.meta is None:
        return True
    negative = {
        place for place, info in case.meta.components.items()
        if info.mode is GenerationMode.NEGATIVE
    }  # fmt: skip
    if negative - {ParameterLocation.QUERY}:
        return True
    sent = _on_the_wire(case.query or {})
    # A name the schema does not list is no breach: OpenAPI lets a query carry others.
    return any(
        parameter.name in sent and not _admitted(parameter, sent[parameter.name])
        for parameter in case.operation.query
    )


def _admitted(parameter: Any, values: list[str]) -> bool:
    """Whether the query ``parameter``'s schema takes the ``values`` sent for it: all of
    them for a repeatable one, the last for one that takes a single value. A number with
    no fraction (``0.0``) is an integer, as JSON Schema counts it (draft 6 on) and as
    pydantic reads it."""
    values = [_integral(value) for value in values]
    return bool(parameter.is_valid(values)) or bool(parameter.is_valid(values[-1]))


def _integral(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() and "." in value else value


def _any_port(env: Env) -> Env:
    """POST /v1/dashboard opens the dashboard: on a free port, not the default one another
    test or the machine's own daemon may hold."""
    with (env.home / "config.toml").open("a") as config:
        config.write('[dashboard]\nlisten = "127.0.0.1:0"\n')
    return env


# -- a daemon without images: every operation ------------------------------------------------


@pytest.fixture(scope="module")
def bare() -> Iterator[tuple[requests.Session, Any]]:
    env = _any_port(_new_env(own_images=True))
    try:
        with _session(env) as http:
            schema = http.get(f"{BASE_URL}/openapi.json").json()
            try:
                yield http, schemathesis.openapi.from_dict(schema)
            finally:  # the networks the fuzzer made are kernel objects: take them down
                for network in http.get(f"{BASE_URL}/v1/networks").json():
                    http.delete(f"{BASE_URL}/v1/networks/{network['name']}")
    finally:
        _finish(env)


@pytest.mark.parametrize(
    ("method", "path"), [op for op in OPERATIONS if op != ("post", "/v1/images/build")]
)
def test_every_operation(bare: tuple[requests.Session, Any], method: str, path: str) -> None:
    http, schema = bare
    _fuzz(schema[path][method.upper()], http)


# -- a daemon with an image and a VM up: its routes, and creating past the quota -------------


@pytest.fixture(scope="module")
def with_vm(image_cache: Any) -> Iterator[tuple[requests.Session, Any, dict[str, str]]]:
    env = _any_port(_new_env())
    try:
        with _session(env) as http:
            made = http.post(f"{BASE_URL}/v1/projects", json={"name": PROJECT, "max_vms": 1})
            assert made.ok, made.text
            headers = {"Authorization": f"Bearer {made.json()['token']}"}
            schema = http.get(f"{BASE_URL}/openapi.json").json()
            yield http, schemathesis.openapi.from_dict(schema), headers
    finally:
        _finish(env)


#: What the fuzzer may have set on the target VM, put back before each test.
_RESET = {
    "lease": {"timeout": None},
    "idle": {"action": "none"},
    "limits": {"cpu_weight": 100}
    | dict.fromkeys(
        ("cpu_cap", "memory_limit", "disk_iops", "disk_bw", "disk_iops_burst", "disk_bw_burst"),
        "none",
    ),
}


def _vm_up(http: requests.Session, headers: dict[str, str]) -> None:
    """The target VM running, with no lease, idle policy or limit the fuzzer set: booted
    again if one of them stopped or removed it (or made the first time)."""
    url = f"{BASE_URL}/v1/vms/{TARGET}"

    def settled() -> dict[str, Any] | None:
        answer = http.get(url, headers=headers)
        if answer.status_code == 404:
            return {"state": "absent"}
        vm: dict[str, Any] = answer.json()
        return None if vm["state"] in ("starting", "stopping") or vm["operation"] else vm

    vm = wait_until("the target VM to settle", settled, timeout=120)
    if vm["state"] == "absent":
        made = http.post(
            f"{BASE_URL}/v1/vms", headers=headers, json={"name": TARGET, "memory": "384M"}
        )
        assert made.ok, made.text
    elif vm["state"] != "running":
        action = "resume" if vm["state"] == "paused" else "start"
        started = http.post(f"{url}/{action}", headers=headers)
        assert started.ok, started.text
    for what, body in _RESET.items():
        method = http.post if what == "lease" else http.patch
        answer = method(f"{url}/{what}", headers=headers, json=body)
        assert answer.ok, answer.text


def _pinned(case: schemathesis.Case) -> schemathesis.Case:
    """The case aimed at the target VM; a sandbox not warm (a warm one boots a template
    VM for each shape); a command given at most 10 s (one waiting on a terminal would
    hold its request to its timeout); a log read, not followed (a running VM's followed
    console never ends: tests/daemon/api/test_listing_and_logs.py tries that)."""
    if case.path_parameters and "name" in case.path_parameters:
        case.path_parameters["name"] = TARGET
    body = case.body
    if isinstance(body, dict) and case.operation.path == "/v1/sandboxes":
        body["warm"] = False
    if case.operation.path.endswith("/logs") and isinstance(case.query, dict):
        case.query.pop("follow", None)
    if isinstance(body, dict) and case.operation.path.endswith("/exec"):
        timeout = body.get("timeout")
        if timeout is None or (isinstance(timeout, int | float) and timeout > 10):
            body["timeout"] = 10
    return case


@pytest.mark.vm
@pytest.mark.parametrize(("method", "path"), ON_A_VM)
def test_on_a_vm(
    with_vm: tuple[requests.Session, Any, dict[str, str]], method: str, path: str
) -> None:
    http, schema, headers = with_vm
    _vm_up(http, headers)
    _fuzz(schema[path][method.upper()], http, headers=headers, adjust=_pinned)
    vms = http.get(f"{BASE_URL}/v1/vms", headers=headers).json()
    assert [vm["name"] for vm in vms] in ([TARGET], []), "a refused create left a VM behind"


def test_the_vm_routes_fuzzed_exist() -> None:
    assert set(ON_A_VM) <= set(OPERATIONS)
