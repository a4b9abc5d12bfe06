"""Who turns KSM on and off when several daemons and an admin share a host.

The knobs are a directory of files laid out as /sys/kernel/mm/ksm is (the kernel's own
is host-global: the VM test in tests/daemon/policies/test_ksm_vms.py uses it), the
registry a directory of the test's, and the claims real processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.host.ksm import Ksm, KsmSettings
from bungalow.host.ksm_owner import KsmOwnership
from tests.support import wait_until

ADVISOR = KsmSettings(1, 0, 20, "scan-time", 10)
FOUND = {"run": "0", "pages_to_scan": "100", "sleep_millisecs": "20",
         "advisor_mode": "[none] scan-time", "advisor_max_cpu": "70"}  # fmt: skip


@pytest.fixture
def ksm(tmp_path: Path) -> Ksm:
    root = tmp_path / "ksm"
    root.mkdir()
    for name, value in {**FOUND, "pages_sharing": "0", "full_scans": "0"}.items():
        (root / name).write_text(f"{value}\n")
    return Ksm(root)


@pytest.fixture
def vm() -> Iterator[int]:
    """A live process standing for a VM's QEMU."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child.pid
    child.kill()
    child.wait()


def daemon(name: str, ksm: Ksm, tmp_path: Path) -> KsmOwnership:
    return KsmOwnership(name, ksm, tmp_path / "registry")


def test_the_first_claim_turns_ksm_on_and_the_last_puts_back_what_was_found(
    ksm: Ksm, vm: int, tmp_path: Path
) -> None:
    a, b = daemon("a", ksm, tmp_path), daemon("b", ksm, tmp_path)
    standing = a.settle([vm], ADVISOR)
    assert (standing.holder, standing.changed) == ("bungalow", "turned on")
    assert ksm.settings() == KsmSettings(1, 100, 20, "scan-time", 10)
    assert b.settle([vm], ADVISOR).claims == 2
    assert a.settle([], ADVISOR).holder == "bungalow"  # b's VMs still share
    assert ksm.read("run") == "1"
    standing = b.settle([], ADVISOR)
    assert (standing.holder, standing.changed) == ("off", "turned off: no VM claims it")
    assert ksm.settings() == KsmSettings(0, 100, 20, "none", 70)
    assert not (tmp_path / "registry" / "owner.json").exists()


def test_ksm_someone_else_turned_on_is_neither_tuned_nor_turned_off(
    ksm: Ksm, vm: int, tmp_path: Path
) -> None:
    ksm.write("run", 1)
    ksm.write("pages_to_scan", 4000)
    a = daemon("a", ksm, tmp_path)
    assert a.settle([vm], ADVISOR).holder == "other"
    assert a.settle([], ADVISOR).holder == "other"
    assert ksm.settings() == KsmSettings(1, 4000, 20, "none", 70)


def test_ksm_turned_off_under_bungalow_stays_off(ksm: Ksm, vm: int, tmp_path: Path) -> None:
    a, b = daemon("a", ksm, tmp_path), daemon("b", ksm, tmp_path)
    a.settle([vm], ADVISOR)
    ksm.write("run", 0)  # an admin's word
    standing = a.settle([vm], ADVISOR)
    assert (standing.holder, standing.changed) == ("yielded", "left off: run was set to 0")
    assert b.settle([vm], ADVISOR).holder == "yielded"
    assert ksm.settings() == KsmSettings(0, 100, 20, "none", 70)  # the rate it found, back
    assert a.look().holder == "yielded"


def test_a_claim_whose_vms_are_gone_holds_nothing(ksm: Ksm, vm: int, tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    a, b = daemon("a", ksm, tmp_path), daemon("b", ksm, tmp_path)
    a.settle([vm], ADVISOR)
    claim = tmp_path / "registry" / "claims" / "a"
    record = json.loads(claim.read_text())
    # a's daemon was SIGKILLed, and its VM died after it: only a dead process is left.
    claim.write_text(json.dumps({**record, "processes": [[gone.pid, 1]]}))
    assert b.settle([], ADVISOR).holder == "off"
    assert ksm.read("run") == "0"
    assert not claim.exists()


def test_a_record_from_before_a_reboot_is_ignored(ksm: Ksm, vm: int, tmp_path: Path) -> None:
    a = daemon("a", ksm, tmp_path)
    a.settle([vm], ADVISOR)
    registry = tmp_path / "registry"
    for name in ("owner.json", "claims/a"):
        record = json.loads((registry / name).read_text())
        (registry / name).write_text(json.dumps({**record, "boot_id": "an-earlier-boot"}))
    ksm.write("run", 0)  # the reboot's KSM is off: not an admin's doing
    assert daemon("b", ksm, tmp_path).settle([vm], ADVISOR).changed == "turned on"


def test_a_daemon_without_vms_claims_nothing(ksm: Ksm, tmp_path: Path) -> None:
    a = daemon("a", ksm, tmp_path)
    assert (a.settle([], ADVISOR).holder, ksm.read("run")) == ("off", "0")
    assert not a.held()


def test_without_ksm_in_the_kernel_nothing_is_done(tmp_path: Path, vm: int) -> None:
    standing = KsmOwnership("a", Ksm(tmp_path / "none"), tmp_path / "registry").settle([vm], None)
    assert standing.holder == "absent"
    assert not (tmp_path / "registry").exists()


def test_a_claim_whose_vm_is_a_zombie_holds_nothing(ksm: Ksm, tmp_path: Path) -> None:
    """A QEMU that died after its daemon is reparented; until someone reaps it, its /proc
    entry stays (state Z) with its start time, and must not count as a VM that shares."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{zombie.pid}/stat")
    wait_until("the child to exit unreaped", lambda: stat.read_text().split(") ")[1][0] == "Z")
    try:
        a, b = daemon("a", ksm, tmp_path), daemon("b", ksm, tmp_path)
        assert a.settle([zombie.pid], ADVISOR).claimed is False
        a.settle([], ADVISOR)
        claim = tmp_path / "registry" / "claims" / "a"
        start = int(stat.read_text().rsplit(")", 1)[1].split()[19])
        claim.write_text(json.dumps({"processes": [[zombie.pid, start]], "boot_id": _boot()}))
        assert b.settle([], ADVISOR).holder == "off"
        assert not claim.exists()
    finally:
        zombie.wait()


def _boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
