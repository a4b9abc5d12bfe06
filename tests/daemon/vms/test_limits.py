"""Limits as the API takes them: sizes as text, 0 or none lifting one, one sentence for nonsense."""

from __future__ import annotations

import pytest

from bungalow.daemon.vms.limits import Limits
from bungalow.errors import UserError


def test_changes_parse_sizes_and_lift_with_zero() -> None:
    limits = Limits().changed({"disk_bw": "100M", "disk_iops": "2000", "cpu_cap": "0.5"})
    assert limits.disk_bw == 100 << 20 and limits.disk_iops == 2000 and limits.cpu_cap == 0.5
    lifted = limits.changed({"disk_bw": "0", "cpu_cap": "none", "cpu_weight": 300})
    assert lifted.disk_bw is None and lifted.cpu_cap is None and lifted.cpu_weight == 300
    assert lifted.disk_iops == 2000
    assert Limits.from_json(lifted.to_json()) == lifted
    assert Limits().to_json() == {"cpu_weight": 100}


def test_disk_throttle_arguments_for_qmp() -> None:
    args = Limits(disk_iops=500, disk_iops_burst=2000).disk().qmp_arguments()
    assert args["iops"] == 500 and args["iops_max"] == 2000 and args["bps"] == 0


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"disk_iops_burst": 10}, "burst needs"),
        ({"disk_iops": 100, "disk_iops_burst": 10}, "at least that limit"),
        ({"disk_bw": "fast"}, "disk bw"),
        ({"cpu_weight": 20000}, "outside 1-10000"),
    ],
)
def test_nonsense_is_refused(changes: dict[str, object], words: str) -> None:
    with pytest.raises(UserError, match=words):
        Limits().changed(changes)


def test_a_network_limit_is_a_size_each_way_and_lifts_with_zero() -> None:
    limits = Limits().changed({"net_bw": "50M"})
    assert limits.net_bw == 50 << 20 and limits.to_json()["net_bw"] == 50 << 20
    assert limits.changed({"net_bw": "none"}).net_bw is None
    assert limits.changed({"net_bw": 0}).net_bw is None
    with pytest.raises(UserError, match="at least 16K per second"):
        limits.changed({"net_bw": "1K"})
    with pytest.raises(UserError, match="not a size"):
        limits.changed({"net_bw": "quick"})
