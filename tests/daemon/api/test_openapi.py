"""GET /openapi.json lists every route of every router, each with what it answers.

The routes are read from the routers of the api package themselves (not from
the app), so a router left out of the app, or a route without a schema,
shows here the moment it is written.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute

import bungalow.daemon.api
from bungalow.daemon.server.wiring import app_for
from tests.daemon.api.conftest import client
from tests.daemon.conftest import build_daemon
from tests.daemon.records import SetClock


def _routes() -> list[APIRoute | APIWebSocketRoute]:
    found: list[APIRoute | APIWebSocketRoute] = []
    for module in pkgutil.iter_modules(bungalow.daemon.api.__path__):
        router = getattr(importlib.import_module(f"bungalow.daemon.api.{module.name}"), "router",
                         None)  # fmt: skip
        if router is not None:
            found += [r for r in router.routes if isinstance(r, APIRoute | APIWebSocketRoute)]
    return found


OPERATIONS = sorted(
    (method.lower(), route.path)
    for route in _routes()
    if isinstance(route, APIRoute)
    for method in route.methods or ()
)
#: Routes that stream or answer text: they say so, rather than claim JSON of any shape.
STREAMED = {
    ("post", "/v1/vms/{name}/exec"): "application/x-ndjson",
    ("get", "/v1/vms/{name}/files"): "application/octet-stream",
    ("get", "/v1/vms/{name}/logs"): "text/plain",
    ("post", "/v1/images/build"): "application/x-ndjson",
    ("post", "/v1/vms/{name}/wait"): "application/x-ndjson",
    ("get", "/metrics"): "text/plain",
    ("get", "/v1/vms/{name}/screenshot"): "image/png",
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The schema of one app for the whole module: making it takes a quarter of a second."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("BUNGALOW_IMAGES", raising=False)
        daemon = build_daemon(tmp_path_factory.mktemp("openapi") / "home", SetClock())
    yield app_for(daemon).openapi()
    daemon.store.close()


def test_every_router_of_the_api_package_is_served(schema: dict[str, Any]) -> None:
    assert len(OPERATIONS) > 40
    served = {(method, path) for path, item in schema["paths"].items() for method in item}
    assert set(OPERATIONS) <= served
    websockets = {r.path for r in _routes() if isinstance(r, APIWebSocketRoute)}
    assert websockets == {"/v1/vms/{name}/exec/ws", "/v1/vms/{name}/console"}


async def test_the_schema_is_what_the_daemon_serves(app: FastAPI, schema: dict[str, Any]) -> None:
    async with client(app) as api:
        served = (await api.get("/openapi.json")).json()
    assert served["paths"].keys() == schema["paths"].keys()
    assert served["info"]["title"] == "bungalowd"


def _is_bare(schema: dict[str, Any]) -> bool:
    """A schema that says nothing about its fields: ``{}`` or an object of anything."""
    if "$ref" in schema:
        return False
    if schema.get("type") == "array":
        return _is_bare(schema.get("items", {}))
    if "anyOf" in schema:
        return any(_is_bare(option) for option in schema["anyOf"] if option.get("type") != "null")
    if schema.get("type") in ("string", "integer", "number", "boolean"):
        return False
    return "properties" not in schema


@pytest.mark.parametrize(
    ("method", "path"),
    OPERATIONS,
)
def test_each_route_says_what_it_answers(schema: dict[str, Any], method: str, path: str) -> None:
    responses = schema["paths"][path][method]["responses"]
    (status,) = [code for code in responses if code.startswith("2")]
    if status == "204":
        assert "content" not in responses[status]
        return
    content = responses[status]["content"]
    if (method, path) in STREAMED:
        assert list(content) == [STREAMED[method, path]]
        return
    assert list(content) == ["application/json"]
    assert not _is_bare(content["application/json"]["schema"]), content


def test_the_errors_are_documented_as_they_are_answered(schema: dict[str, Any]) -> None:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (method, path)
