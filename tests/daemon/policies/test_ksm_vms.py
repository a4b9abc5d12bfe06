"""Four identical idle server VMs share pages once KSM has scanned; who holds the switch.

KSM is host-wide, so this module uses the host's own /sys/kernel/mm/ksm: it runs only
when KSM is off when it starts (on, it is someone else's to keep), and puts every knob
back as it found it at the end, whatever happened. The suite's other daemons run with
``ksm = "off"`` (tests/conftest.py), so nothing else here turns it on meanwhile.

The VMs boot with ``ksm = "off"``: the switch is left alone, and the figures without
sharing are taken; then the daemon restarts with ``auto`` (the VMs outlive it), turns
KSM on, and their summed PSS falls.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bungalow.host.ksm import Ksm, KsmSettings
from bungalow.host.ksm_owner import REGISTRY
from tests.conftest import SERVER_IMAGE, Env
from tests.support import gone, wait_until

pytestmark = pytest.mark.vm

MIB = 1 << 20
VMS = ("s1", "s2", "s3", "s4")


@pytest.fixture(scope="module")
def found(bw_module: Env) -> Iterator[KsmSettings]:
    """KSM's settings as this module found them: put back at its end, once the module's
    daemon and VMs are gone (so that nothing claims KSM after), with the records of
    bungalow's registry this module made."""
    ksm = Ksm()
    if not ksm.available:
        pytest.skip("this kernel has no KSM")
    settings = ksm.settings()
    if settings.run != 0 or (REGISTRY / "owner.json").exists():
        pytest.skip("KSM is on already: someone else's, which bungalow leaves alone")
    had_yielded = (REGISTRY / "yielded.json").exists()
    yield settings
    bw_module.shutdown()
    daemon = bw_module.daemon_pid()
    if daemon is not None:
        wait_until("the daemon's exit", lambda: gone(daemon), 30)
    if ksm.settings() != settings:
        ksm.apply(settings)
    (REGISTRY / "owner.json").unlink(missing_ok=True)
    if not had_yielded:
        (REGISTRY / "yielded.json").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def servers(found: KsmSettings, bw_module: Env, server_image: Path) -> Env:
    for pair in (VMS[:2], VMS[2:]):  # two boots at a time: kinder to a 2-CPU host
        for name in pair:
            bw_module.run("launch", name, "--image", SERVER_IMAGE, "--memory", "320M", timeout=600)
        for name in pair:  # idle: systemd's start-up jobs done
            bw_module.run("wait", name, "--timeout", "15m", timeout=1000)
    return bw_module


def _overhead(bw: Env) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(bw.run("overhead", "--json").stdout)
    return report


def _ksm(bw: Env) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(bw.run("host", "info", "--json").stdout)
    return info["memory_use"]["ksm"]  # type: ignore[no-any-return]


def _restart_with(bw: Env, mode: str) -> None:
    (bw.home / "config.toml").write_text(f'[sandboxes]\npool = 0\n\n[memory]\nksm = "{mode}"\n')
    daemon = bw.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGTERM)
    wait_until("the daemon's exit", lambda: gone(daemon), 30)


def test_ksm_off_leaves_the_switch_alone_and_shows_each_vms_memory(servers: Env) -> None:
    report = _overhead(servers)
    assert [vm["vm"] for vm in report["vms"]] == list(VMS)
    for vm in report["vms"]:
        assert vm["memory"] == 320 * MIB
        assert vm["ksm_merging"] == 0
        # The guest's RAM is found by its mergeable mappings: QEMU kept mem-merge on.
        assert 32 * MIB < vm["guest_ram"] <= vm["pss"] <= vm["rss"]
        assert vm["overhead"] == vm["pss"] - vm["guest_ram"] > 8 * MIB
        assert 16 * MIB < vm["guest_used"] < 320 * MIB  # from the guest's /proc/meminfo
        # Cold-booted with a balloon: what the guest reports free is not held for it.
        assert 0 < vm["given_back"] < 320 * MIB
    ksm = _ksm(servers)
    assert (ksm["mode"], ksm["holder"], ksm["run"]) == ("off", "off", 0)
    assert Ksm().settings().run == 0


def test_four_idle_servers_share_pages_once_ksm_has_scanned(servers: Env) -> None:
    before = sum(vm["pss"] for vm in _overhead(servers)["vms"])
    _restart_with(servers, "auto")

    def shared() -> dict[str, Any] | None:
        report = _overhead(servers)
        summed = sum(vm["pss"] for vm in report["vms"])
        merged = all(vm["ksm_merging"] > 16 * MIB for vm in report["vms"])
        return report if merged and summed < 0.8 * before else None

    report = wait_until("the four VMs' pages merged and their summed PSS down by 20%", shared, 420)
    host = report["host"]
    assert host["shared"] >= max(vm["ksm_merging"] for vm in report["vms"])
    assert host["qemu_pss"] == sum(vm["pss"] for vm in report["vms"])
    ksm = host["ksm"]
    assert (ksm["mode"], ksm["holder"], ksm["run"]) == ("auto", "bungalow", 1)
    if Ksm().has_advisor:
        assert ksm["advisor_mode"] == "none"  # bungalow paces ksmd itself (policies/ksm.py)
    assert ksm["pages_to_scan"] >= 64
    assert "turned on by bungalow" in servers.run("host", "info").stdout
    metrics = servers.get("/metrics").text
    for name in VMS:
        assert f'bungalow_vm_memory_ksm_merging_bytes{{vm="{name}"}}' in metrics
    assert "bungalow_host_ksm_shared_bytes" in metrics


def test_ksm_turned_off_by_someone_stays_off_and_on_by_someone_stays_on(
    servers: Env, found: KsmSettings
) -> None:
    ksm = Ksm()
    assert _ksm(servers)["holder"] == "bungalow"
    ksm.write("run", 0)  # an admin overrules bungalow
    wait_until("the daemon to yield", lambda: _ksm(servers)["holder"] == "yielded", 30)
    assert ksm.settings() == found  # bungalow's scan rate went with it
    ksm.write("run", 1)  # the admin's own KSM now
    wait_until("KSM seen as someone else's", lambda: _ksm(servers)["holder"] == "other", 30)
    servers.run("rm", "-f", *VMS)
    wait_until("no claim left", lambda: _ksm(servers)["claims"] == 0, 30)
    assert ksm.settings().run == 1  # not bungalow's to turn off
