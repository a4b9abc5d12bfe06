"""bench/overhead.py's pure parts: MemAvailable, when KSM has settled, and libvirt's defaults."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _libvirt import DomainSpec, domain_xml
from _support import BenchFailed
from overhead import mem_available_kib, ratio, scaled_to, settled

MEMINFO = "MemTotal:       24683400 kB\nMemFree:        15936000 kB\nMemAvailable:   20210000 kB\n"


def test_mem_available_is_read_in_kib() -> None:
    assert mem_available_kib(MEMINFO) == 20210000
    with pytest.raises(BenchFailed, match="no MemAvailable"):
        mem_available_kib("MemTotal: 1 kB\n")


def test_ksm_has_settled_after_two_full_scans_and_a_steady_count() -> None:
    assert settled(3, 5, 99_000, 100_000)
    assert not settled(4, 5, 99_000, 100_000)  # one full scan only
    assert not settled(3, 5, 80_000, 100_000)  # still merging
    assert not settled(3, 5, 0, 0)  # nothing merged


def test_ratio() -> None:
    assert (ratio(55, 100), ratio(1, 0)) == ("0.55", "n/a")


def test_a_sum_is_scaled_to_the_other_sides_count() -> None:
    assert scaled_to(10, 5, 700) == 1400  # five server VMs' 700 KiB, as if ten
    assert scaled_to(10, 0, 0) == 0  # no server VM: nothing to compare


def test_libvirt_with_its_defaults_keeps_its_balloon_and_usb_controller() -> None:
    spec = DomainSpec("d", 512, 1, Path("/k"), Path("/i"), "", Path("/d"), "n", Path("/c"),
                      (64055, 64055), defaults=True)  # fmt: skip
    devices = ET.fromstring(domain_xml(spec)).find("devices")
    assert devices is not None
    assert devices.find("memballoon") is None and devices.find("controller") is None
    assert ET.fromstring(domain_xml(spec)).find("features/tcg") is None  # QEMU's 1 GiB cache
