"""bench/arch.py's pure parts: the workload every guest runs, and the table of ratios."""

from __future__ import annotations

import subprocess
import sys

from arch import WORKLOAD, Figures, table


def test_the_workload_prints_the_seconds_it_took() -> None:
    out = subprocess.run(
        [sys.executable, "-c", WORKLOAD.format(loop=1000)], capture_output=True, text=True
    )
    assert out.returncode == 0 and 0 < float(out.stdout) < 10


def test_each_guest_is_shown_as_a_ratio_to_the_first() -> None:
    rounds = {
        "amd64": [Figures(2.0, 1.0, 100 * 1024), Figures(4.0, 3.0, 300 * 1024)],
        "arm64": [Figures(9.0, 4.0, 250 * 1024)],
    }
    header, amd64, arm64 = table(rounds)
    assert header.split()[:2] == ["guest", "boot"]
    assert amd64.split() == ["amd64", "3.0s", "(1.00x)", "2.00s", "(1.00x)", "200M", "(1.00x)"]
    assert arm64.split() == ["arm64", "9.0s", "(3.00x)", "4.00s", "(2.00x)", "250M", "(1.25x)"]
