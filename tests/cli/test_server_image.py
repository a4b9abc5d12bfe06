"""A server image (debian-12-server) on real TCG guests: systemd as PID 1, the agent before
multi-user.target, --wait services, a unit that survives stop/start, a clean shutdown, and a
clone's new identity.

One server VM (``srv``) is booted for the module; the image is built once per machine into
the shared image cache (about 2-3 minutes the first time).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import Env
from tests.support import wait_until

pytestmark = pytest.mark.vm

SERVER = "debian-12-server"
UNIT = """[Unit]
Description=a service a user enabled
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""


def _sh(bw: Env, vm: str, script: str) -> str:
    return bw.run("exec", vm, "--", "sh", "-c", script).stdout


@pytest.fixture(scope="session")
def server_image(image_cache: Path) -> Path:
    """debian-12-server in the shared image cache, built the first time a session needs it."""
    home = Path(tempfile.mkdtemp(prefix="bgw-", dir="/tmp"))
    env = Env(home, image_cache)
    try:
        env.run("image", "build", SERVER, timeout=1800)
    finally:
        env.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    return image_cache


@pytest.fixture(scope="module")
def srv(bw_module: Env, server_image: Path) -> Env:
    bw_module.run("launch", "srv", "--image", SERVER, "--disk", "6G", timeout=600)
    return bw_module


def test_the_agent_answers_under_systemd_before_multi_user(srv: Env) -> None:
    first = _sh(srv, "srv", "cat /proc/1/comm; cut -d' ' -f1 /proc/uptime; cat /proc/self/cgroup")
    comm, uptime, cgroup = first.split("\n", 2)
    assert comm == "systemd"
    assert "bungalow-agent.service" in cgroup  # the agent runs as its unit, not as PID 1
    srv.run("wait", "srv", "--timeout", "15m", timeout=1000)
    reached = _sh(srv, "srv", "systemctl show -P ActiveEnterTimestampMonotonic multi-user.target")
    assert float(uptime) < int(reached) / 1e6  # the first exec came before multi-user.target


def test_wait_services_reports_running_or_degraded(srv: Env) -> None:
    waited = srv.run("wait", "srv", "--timeout", "15m", timeout=1000)
    assert "srv's services have started" in waited.stdout
    state = _sh(srv, "srv", "systemctl is-system-running || true").strip()
    assert state in ("running", "degraded")
    assert ("(running)" in waited.stdout) == (state == "running")


def test_the_image_is_clean_and_its_guest_has_an_identity(srv: Env) -> None:
    facts = _sh(
        srv,
        "srv",
        "cat /etc/machine-id; hostname; ls /usr/sbin/policy-rc.d 2>&1 | grep -c 'No such'; "
        "ls /etc/ssh/ssh_host_ed25519_key; readlink /etc/resolv.conf; ip -4 -o addr show eth0",
    ).split("\n")
    cmdline = _sh(srv, "srv", "cat /proc/cmdline").split()
    assert f"systemd.machine_id={facts[0]}" in cmdline  # the VM's own, given by the daemon
    assert facts[1] == "srv"
    assert facts[2] == "1"
    assert facts[3] == "/etc/ssh/ssh_host_ed25519_key"  # made on first boot
    assert facts[4].endswith("stub-resolv.conf")
    assert "10.0.2.15/24" in facts[5] and "dynamic" in facts[5]  # networkd's DHCP lease
    flavours = {image["name"]: image["flavour"] for image in json.loads(
        srv.run("image", "ls", "--json").stdout
    )}  # fmt: skip
    assert flavours[SERVER] == "server"
    # The agent grew the root file system to the 6G disk, as PID 1 does in a micro image.
    root_kib = wait_until(
        "the root file system grown to the disk",
        lambda: (kib := int(_sh(srv, "srv", "df -k --output=size / | tail -1"))) > 5 << 20 and kib,
        timeout=120,
        interval=1.0,
    )
    assert root_kib <= 6 << 20
    # The image's whole module tree is there for modprobe (nftables inside the guest).
    assert _sh(srv, "srv", "modprobe nf_tables && cat /sys/module/nf_tables/initstate").strip() == (
        "live"
    )


def test_an_enabled_unit_survives_a_clean_stop_and_start(srv: Env) -> None:
    _sh(
        srv,
        "srv",
        f"printf '{UNIT}' > /etc/systemd/system/kept.service && systemctl enable --now kept",
    )
    srv.run("stop", "srv")
    srv.run("start", "srv")
    srv.run("wait", "srv", "--timeout", "15m", timeout=1000)
    assert _sh(srv, "srv", "systemctl is-active kept").strip() == "active"
    # The boot before ended through systemd's own shutdown, not a power cut.
    previous = _sh(srv, "srv", "journalctl -b -1 -o cat --no-pager | tail -n 40")
    assert "systemd-shutdown" in previous or "Shutting down." in previous, previous


def test_suspend_and_wake_keep_the_services_running(srv: Env) -> None:
    before = _sh(srv, "srv", "systemctl show -P MainPID kept").strip()
    srv.run("suspend", "srv")
    srv.run("start", "srv")
    assert _sh(srv, "srv", "systemctl show -P MainPID kept").strip() == before


def test_a_clone_gets_a_new_machine_id_host_keys_and_name(srv: Env) -> None:
    key = "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2"
    source_id, source_key = _sh(srv, "srv", f"cat /etc/machine-id; {key}").split()
    srv.run("clone", "srv", "srv2")
    try:
        clone_id = _sh(srv, "srv2", "cat /etc/machine-id").strip()
        assert len(clone_id) == 32 and clone_id != source_id
        assert _sh(srv, "srv2", "hostname").strip() == "srv2"
        new_key = (
            f"systemctl is-active -q ssh && test -s /etc/ssh/ssh_host_ed25519_key.pub && {key}"
        )
        clone_key = wait_until(
            "the clone's new SSH host key",
            lambda: _sh(srv, "srv2", f"{new_key} || true").strip(),
            timeout=120,
            interval=1.0,
        )
        assert clone_key != source_key
        # journald follows the new machine-id: this boot's journal is readable again
        wait_until(
            "the clone's journal",
            lambda: "No journal files" not in _sh(srv, "srv2", "journalctl -n 1 2>&1 || true"),
            timeout=60,
            interval=1.0,
        )
    finally:
        srv.run("rm", "-f", "srv2")


def test_a_micro_image_has_no_services_to_wait_for(srv: Env) -> None:
    srv.run("launch", "tiny", "--wait", "services")
    try:
        waited = srv.run("wait", "tiny")
        assert "has no systemd (a micro image)" in waited.stdout
    finally:
        srv.run("rm", "-f", "tiny")
