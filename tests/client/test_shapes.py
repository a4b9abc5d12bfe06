"""The client's TypedDicts against the daemon's own models: same keys, so neither drifts alone.

The daemon's schemas are moving into ``bungalow.daemon.api``; the lookups below
try the new home first and the old one second, and fail (not skip) when a
model is in neither, so a move is noticed here.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import pytest
from pydantic import BaseModel

from bungalow.client import shapes
from tests.client import answers

try:
    from bungalow.daemon.api import schemas
except ImportError:
    from bungalow.daemon import schemas


def daemon_class(name: str, *old_homes: str) -> Any:
    """The daemon's class ``name``: in the API's schemas, or where it lived before."""
    for home in (schemas.__name__, *old_homes):
        try:
            module = importlib.import_module(home)
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    pytest.fail(f"The daemon's {name} is in none of {[schemas.__name__, *old_homes]}; update them.")


COST_HOMES = ("bungalow.daemon.api_costs", "bungalow.daemon.api.costs")
SPRAWL_HOMES = ("bungalow.daemon.sprawl", "bungalow.daemon.policies.sprawl")

#: client TypedDict -> the daemon's pydantic model (or dataclass) of the same answer
MIRRORS: list[tuple[type, str, tuple[str, ...]]] = [
    (shapes.VmInfo, "VmInfo", ()),
    (shapes.VmCostInfo, "VmCostInfo", ()),
    (shapes.NicInfo, "NicInfo", ()),
    (shapes.SnapshotInfo, "SnapshotInfo", ()),
    (shapes.ImageInfo, "ImageInfo", ()),
    (shapes.AccelInfo, "AccelInfo", ()),
    (shapes.HostInfo, "HostInfo", ()),
    (shapes.CostReport, "CostReport", COST_HOMES),
    (shapes.CostRow, "CostRow", COST_HOMES),
    (shapes.SprawlFinding, "Finding", SPRAWL_HOMES),
    (shapes.NetworkInfo, "NetworkInfo", ()),
    (shapes.NetworkDetail, "NetworkDetail", ()),
    (shapes.NetworkNic, "NetworkNic", ()),
    (shapes.NetworkLease, "NetworkLease", ()),
    (shapes.VncInfo, "VncInfo", ()),
    (shapes.DashboardInfo, "DashboardInfo", ()),
    (shapes.DashboardToken, "DashboardToken", ()),
]


def _fields(cls: Any) -> set[str]:
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return set(cls.model_fields)
    return {field.name for field in dataclasses.fields(cls)}


@pytest.mark.parametrize(("shape", "name", "homes"), MIRRORS, ids=[m[1] for m in MIRRORS])
def test_each_typed_answer_has_the_keys_of_the_daemons_model(
    shape: type, name: str, homes: tuple[str, ...]
) -> None:
    keys = shape.__required_keys__ | shape.__optional_keys__
    assert keys == _fields(daemon_class(name, *homes))


SAMPLES = [
    ("VmInfo", answers.vm_info(), ()),
    ("SnapshotInfo", answers.snapshot_info(), ()),
    ("ImageInfo", answers.image_info(), ()),
    ("HostInfo", answers.host_info(), ()),
    ("CostReport", answers.cost_report(), COST_HOMES),
]


@pytest.mark.parametrize(("name", "sample", "homes"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_the_tests_sample_answers_are_what_the_daemon_would_send(
    name: str, sample: dict[str, Any], homes: tuple[str, ...]
) -> None:
    model = daemon_class(name, *homes)
    assert model.model_validate(sample).model_dump(mode="json") == sample
