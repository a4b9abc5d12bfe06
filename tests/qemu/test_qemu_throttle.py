"""Disk limits are checked against what QEMU's throttling can meter before QMP sees them."""

from __future__ import annotations

import pytest

from bungalow.errors import UserError
from bungalow.qemu.throttle import BURST_SECONDS, THROTTLE_VALUE_MAX, DiskLimits


def test_a_burst_qemu_cannot_meter_is_refused_with_a_sentence() -> None:
    # QEMU refuses bps_max * bps_max_length over 10^15 ("burst length too high"): a 500
    # from the API before this check (found by the schemathesis fuzzer).
    with pytest.raises(UserError, match="more than QEMU can meter"):
        DiskLimits(bps=2112, bps_burst=562949953421312)
    with pytest.raises(UserError, match="more than QEMU can meter"):
        DiskLimits(iops=THROTTLE_VALUE_MAX + 1)
    most = DiskLimits(bps=1, bps_burst=THROTTLE_VALUE_MAX // BURST_SECONDS)
    assert most.qmp_arguments()["bps_max"] == THROTTLE_VALUE_MAX // BURST_SECONDS
