"""KSM's figures as this host's kernel gives them (read only: the knobs are host-wide)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bungalow.host import ksm

pytestmark = pytest.mark.skipif(not ksm.Ksm().available, reason="this kernel has no KSM")


def test_the_knobs_and_totals_read_as_numbers() -> None:
    settings = ksm.Ksm().settings()
    assert settings.run in (0, 1, 2)
    assert settings.pages_to_scan > 0 and settings.sleep_millisecs > 0
    if ksm.Ksm().has_advisor:
        assert settings.advisor_mode in ("none", "scan-time")
    totals = ksm.Ksm().totals()
    assert totals.saved_bytes == (totals.pages_sharing + totals.ksm_zero_pages) * ksm.PAGE_SIZE


def test_a_process_ksm_stat_is_read_and_a_gone_one_is_none() -> None:
    mine = ksm.process_stat(os.getpid())
    if not Path(f"/proc/{os.getpid()}/ksm_stat").exists():
        pytest.skip("this kernel has no /proc/PID/ksm_stat (6.1+)")
    assert mine is not None and mine.merging_pages == 0  # python marks nothing mergeable
    assert ksm.process_stat(2**22 + 1) is None


def test_ksmd_is_found_as_a_kernel_thread() -> None:
    used = ksm.ksmd_cpu_ns()
    assert used is not None and used >= 0


def test_the_advisor_mode_is_the_bracketed_word(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("0\n")
    (tmp_path / "advisor_mode").write_text("none [scan-time]\n")
    assert ksm.Ksm(tmp_path).advisor_mode() == "scan-time"
    (tmp_path / "advisor_mode").unlink()
    assert ksm.Ksm(tmp_path).advisor_mode() is None
