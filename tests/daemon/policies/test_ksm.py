"""The KSM policy's rules: when a daemon claims KSM, the scan rate without an advisor,
and the configuration key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.daemon.policies import ksm
from bungalow.daemon.server.config import load_config
from bungalow.errors import UserError
from bungalow.host.ksm import PAGE_SIZE

GIB = 1 << 30


def test_auto_claims_ksm_only_when_the_host_runs_more_than_one_vm() -> None:
    assert not ksm.wants_ksm("auto", own_vms=1, host_qemus=1)
    assert ksm.wants_ksm("auto", own_vms=1, host_qemus=2)  # another daemon's or libvirt's
    assert not ksm.wants_ksm("auto", own_vms=0, host_qemus=5)  # nothing of ours to share
    assert ksm.wants_ksm("on", own_vms=1, host_qemus=1)
    assert not ksm.wants_ksm("off", own_vms=4, host_qemus=4)


def test_the_scan_rate_covers_the_mergeable_memory_in_the_target_time() -> None:
    wakes = ksm.TARGET_SCAN_S * 1000 / ksm.SLEEP_MS  # 3 000 batches per full scan
    # 10 VMs of 512M: 1.3M pages, 437 a batch (21 800 pages, 85 MiB a second).
    assert ksm.scan_rate(5 * GIB, None, 100) == -(-5 * GIB // PAGE_SIZE // int(wakes))
    assert ksm.scan_rate(64 << 20, None, 100) == ksm.MIN_PAGES  # little to merge
    assert ksm.scan_rate(200 * GIB, None, 100) == ksm.MAX_PAGES  # ksmtuned's ceiling


def test_the_scan_rate_backs_off_when_ksmd_takes_more_than_its_share() -> None:
    # ksmd took half a CPU at 1000 pages a batch: half the rate keeps it at a quarter.
    assert ksm.scan_rate(200 * GIB, 0.5, 1000) == 500
    assert ksm.scan_rate(200 * GIB, 0.1, 1000) == ksm.MAX_PAGES
    assert ksm.scan_rate(200 * GIB, 10.0, 100) == ksm.MIN_PAGES


def test_memory_ksm_in_config_toml(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert load_config(config).ksm == "auto"
    config.write_text('[memory]\nksm = "off"\n')
    assert load_config(config).ksm == "off"
    config.write_text("[memory]\nksm = true\n")
    with pytest.raises(UserError, match=r'memory.ksm in .* must be "off", "auto" or "on"'):
        load_config(config)
