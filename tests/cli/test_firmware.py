"""UEFI firmware and TPMs through the CLI: imports, travel, recovery, bad input.

The VM is an imported blank disk booted by OVMF: with nothing to boot, OVMF
settles in its boot manager, having written its variables (boot options, and
``MTC``, the monotonic counter it raises on every boot). That counter says
which variable store a VM booted with: kept across stop and start (it goes
up), put back by a snapshot restore (equal to the snapshot's), carried to a
clone. A Linux guest writing its own variable is tests/qemu/test_qemu_firmware_boot.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.host import processes
from bungalow.qemu.firmware.varstore import variables
from tests.conftest import Env, _finish, _new_env
from tests.support import gone, wait_until

pytestmark = pytest.mark.vm

OVMF = Path("/usr/share/OVMF")


@pytest.fixture(scope="module")
def fw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """An installation with an image store of its own holding one imported UEFI disk."""
    env = _new_env(own_images=True)
    disk = tmp_path_factory.mktemp("disks") / "old.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(disk), "64M"], check=True)
    env.run("image", "import", str(disk), "--name", "blank", "--firmware", "uefi")
    yield env
    _finish(env)


def _vm_dir(env: Env, name: str) -> Path:
    return env.home / "vms" / json.loads(env.run("inspect", name).stdout)["id"]


def _counter(store: Path) -> int:
    """OVMF's boot counter in a variable store (0 before its first boot wrote it)."""
    found = variables(store).get("MTC")
    return 0 if found is None else int.from_bytes(found.data, "little")


def _booted(env: Env, name: str, above: int = 0) -> int:
    """Wait until the VM's firmware has counted a boot past ``above``; the count."""
    store = _vm_dir(env, name) / "efivars.fd"
    return wait_until(f"{name}'s firmware to count a boot", lambda: _counter(store) > above and
                      _counter(store), timeout=120)  # fmt: skip


def _swtpms(env: Env, name: str) -> list[processes.HostProcess]:
    return [p for p in processes.under(_vm_dir(env, name)) if p.program == "swtpm"]


def test_variables_and_tpm_travel_and_outlive_the_daemon(fw: Env) -> None:
    fw.run("launch", "u1", "--image", "blank", "--tpm", "--memory", "256M")
    info = json.loads(fw.run("inspect", "u1").stdout)
    assert (info["profile"], info["firmware"], info["tpm"]) == ("pc", "uefi", True)
    vm_dir = _vm_dir(fw, "u1")
    assert len(_swtpms(fw, "u1")) == 1
    first = _booted(fw, "u1")

    fw.run("snapshot", "create", "u1", "s1")
    saved = next((fw.home / "snapshots").glob("*/efivars.fd"))
    assert (saved.parent / "tpm" / "tpm2-00.permall").is_file()
    at_snapshot = _counter(saved)
    assert at_snapshot >= first

    fw.run("stop", "u1", "--timeout", "1s")
    assert _swtpms(fw, "u1") == []
    fw.run("start", "u1")
    restarted = _booted(fw, "u1", above=at_snapshot)  # the store was kept: the count goes on

    fw.run("snapshot", "restore", "u1", "s1")
    assert _counter(vm_dir / "efivars.fd") == at_snapshot < restarted
    assert len(_swtpms(fw, "u1")) == 1

    fw.run("clone", "u1", "c1", "--snapshot", "s1")
    clone = json.loads(fw.run("inspect", "c1").stdout)
    assert (clone["firmware"], clone["tpm"]) == ("uefi", True)
    assert _counter(_vm_dir(fw, "c1") / "efivars.fd") == at_snapshot
    assert len(_swtpms(fw, "c1")) == 1
    fw.run("rm", "-f", "c1")

    # The daemon dies; the next one takes the VM back with its swtpm, and stop leaves none.
    swtpm = _swtpms(fw, "u1")[0].pid
    daemon = fw.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until("the daemon to die", lambda: gone(daemon))
    assert "running" in fw.run("ls").stdout
    assert [p.pid for p in _swtpms(fw, "u1")] == [swtpm]
    fw.run("stop", "u1", "--timeout", "1s")
    wait_until("the adopted swtpm to end", lambda: gone(swtpm))
    assert processes.under(vm_dir) == []
    fw.run("rm", "u1")
    assert processes.under(fw.home) == []


def test_bad_firmware_input_is_one_sentence_and_leaves_nothing(fw: Env, tmp_path: Path) -> None:
    def refused(*args: str, says: str) -> None:
        result = fw.run(*args, check=False)
        assert result.returncode == 1, result
        assert says in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    refused("launch", "m1", "--image", "blank", "--profile", "micro", says="use --profile pc")
    disk = tmp_path / "d.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "8M"], check=True)
    other = str(OVMF / "OVMF_VARS.fd")
    refused("image", "import", str(disk), "--name", "d1", "--firmware", "uefi", "--vars", other,
            says="a vars file from another firmware")  # fmt: skip
    refused("image", "import", str(disk), "--name", "d2", "--vars",
            str(OVMF / "OVMF_VARS_4M.fd"), says="SeaBIOS has none")  # fmt: skip
    assert "running" not in fw.run("ls").stdout
    listing = fw.run("image", "ls").stdout
    assert "d1" not in listing and "d2" not in listing
    assert not list((fw.home / "vms").glob("*")) if (fw.home / "vms").exists() else True
    assert processes.under(fw.home) == []


def test_an_import_keeps_its_vars_file_and_its_vms_start_from_it(fw: Env, tmp_path: Path) -> None:
    disk, store = tmp_path / "kept.raw", tmp_path / "kept-vars.fd"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "8M"], check=True)
    subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x17 0 4k", str(disk)], check=True,
                   capture_output=True)  # fmt: skip
    shutil.copyfile(OVMF / "OVMF_VARS_4M.ms.fd", store)
    fw.run("image", "import", str(disk), "--name", "kept", "--firmware", "uefi-secure",
           "--vars", str(store))  # fmt: skip
    image = json.loads(fw.run("image", "ls", "--json").stdout)
    assert next(i for i in image if i["name"] == "kept")["firmware"] == "uefi-secure"
    fw.run("launch", "k1", "--image", "kept", "--memory", "256M")
    assert json.loads(fw.run("inspect", "k1").stdout)["firmware"] == "uefi-secure"
    assert {"PK", "KEK", "db"} <= set(variables(_vm_dir(fw, "k1") / "efivars.fd"))
    fw.run("rm", "-f", "k1")
    fw.run("image", "rm", "kept")
