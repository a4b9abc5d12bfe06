"""Fair shares and rates, the arithmetic behind `top` and the noisy-neighbour policy."""

from __future__ import annotations

import pytest

from bungalow.daemon.policies.noisy import entitled_shares
from bungalow.daemon.telemetry.metrics import Sample, rates


@pytest.mark.parametrize(
    ("demand", "expected"),
    [
        ({"hog": (2.0, 100), "victim": (1.0, 100)}, {"hog": 1.0, "victim": 1.0}),
        ({"hog": (2.0, 100), "victim": (0.3, 100)}, {"hog": 1.7, "victim": 0.3}),
        ({"hog": (2.0, 300), "victim": (1.0, 100)}, {"hog": 1.5, "victim": 0.5}),
        ({"a": (0.5, 100), "b": (0.5, 100)}, {"a": 0.5, "b": 0.5}),
        ({"idle": (0.0, 100), "busy": (4.0, 100)}, {"idle": 0.0, "busy": 2.0}),
    ],
)
def test_entitled_shares_are_weighted_max_min_fair(
    demand: dict[str, tuple[float, int]], expected: dict[str, float]
) -> None:
    assert entitled_shares(2.0, demand) == pytest.approx(expected)


def test_rates_per_second_from_two_samples() -> None:
    old = Sample(time=100.0, cpu_time=1_000_000_000, vcpu_delay=0, block_wr_bytes=0)
    new = Sample(
        time=102.0, cpu_time=3_000_000_000, vcpu_delay=500_000_000, block_wr_bytes=4096, rss=7
    )
    r = rates(old, new)
    assert r["cpu"] == pytest.approx(1.0) and r["steal"] == pytest.approx(0.25)
    assert r["block_wr_bytes"] == 2048 and r["rss"] == 7
    assert new.domstats()["cpu.time"] == 3_000_000_000
