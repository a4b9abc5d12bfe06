"""The boot timeline: phases as the seconds between marks, and the log line bench/boot.py reads."""

from __future__ import annotations

import re

import pytest

from bungalow.daemon.vms import timeline
from bungalow.daemon.vms.timeline import BootTimeline


def test_each_phase_is_the_time_since_the_phase_before() -> None:
    spent = BootTimeline(received=100.0, ends={"spec": 100.5, "api": 100.1, "qemu": 101.0})
    assert spent.durations() == pytest.approx({"api": 0.1, "spec": 0.4, "qemu": 0.5})
    assert list(spent.durations()) == ["api", "spec", "qemu"]


def test_the_log_line_names_the_request_instant_then_each_phase() -> None:
    spent = BootTimeline(received=12.5, ends={"api": 12.75, "guest": 15.0}, attempt=2)
    assert spent.describe() == "received=12.500000 api=0.250 guest=2.250 (attempt 2)"


def test_marks_land_only_inside_an_open_timeline() -> None:
    timeline.mark("api")  # no boot under way: nothing to record, no error
    with timeline.timing() as spent:
        timeline.mark("api")
        timeline.retried(3)
    timeline.mark("disk")
    assert list(spent.ends) == ["api"]
    assert spent.attempt == 3


def test_a_retried_phase_keeps_its_latest_end() -> None:
    spent = BootTimeline(received=0.0)
    spent.ends["qemu"] = 1.0
    spent.mark("qemu")
    assert spent.ends["qemu"] > 1.0
    assert re.fullmatch(r"received=0\.000000 qemu=[\d.]+ \(attempt 1\)", spent.describe())
