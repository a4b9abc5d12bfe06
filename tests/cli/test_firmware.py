"""UEFI firmware and TPMs through the CLI: imports, travel, recovery, bad input.

One VM is bungalow's debian-12 under OVMF with a TPM, writing UEFI variables from the
guest through efivarfs. Its image is the shared cache's debian-12 with the kernel
package's ``vmlinuz`` beside its ``vmlinux``, as builds now keep it (the cache's was built
before): the suite's Debian cloud kernel, when it is the image's version.

The other is an imported blank disk booted by OVMF: with nothing to boot, OVMF
settles in its boot manager, having written its variables (boot options, and
``MTC``, the monotonic counter it raises on every boot). That counter says
which variable store a VM booted with: kept across stop and start (it goes
up), put back by a snapshot restore (equal to the snapshot's), carried to a
clone.
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
from tests.conftest import IMAGE_CACHE, Env, _finish, _new_env
from tests.support import gone, wait_until

pytestmark = pytest.mark.vm

OVMF = Path("/usr/share/OVMF")
VENDOR = "6b6d0a8c-4d0b-4b3e-9f6a-2c1f0e5b7a11"
EFIVARS = "/sys/firmware/efi/efivars"
MOUNT = f"modprobe efivarfs; mountpoint -q {EFIVARS} || mount -t efivarfs efivarfs {EFIVARS}"


def _efi_debian(store: Path, kernel: Path) -> None:
    """debian-12 from the shared cache (its files linked) with ``kernel`` as its vmlinuz."""
    cached = (IMAGE_CACHE / "names" / "debian-12").resolve()
    version = json.loads((cached / "manifest.json").read_text())["kernel_version"]
    if kernel.name != f"vmlinuz-{version}":
        pytest.skip(f"the suite's kernel {kernel.name} is not debian-12's ({version})")
    image = store / cached.name
    image.mkdir(parents=True)
    for name in ("disk.qcow2", "vmlinux", "modules", "manifest.json"):
        (image / name).symlink_to(cached / name)
    shutil.copyfile(kernel, image / "vmlinuz")
    (store / "names").mkdir(exist_ok=True)
    (store / "names" / "debian-12").symlink_to(f"../{cached.name}")


@pytest.fixture(scope="module")
def fw(tmp_path_factory: pytest.TempPathFactory, image_cache: Path, kernel: Path) -> Iterator[Env]:
    """An installation with an image store of its own: debian-12 with its vmlinuz, and an
    imported blank UEFI disk."""
    env = _new_env(own_images=True)
    _efi_debian(env.home / "images", kernel)
    disk = tmp_path_factory.mktemp("disks") / "old.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(disk), "64M"], check=True)
    env.run("image", "import", str(disk), "--name", "blank", "--firmware", "uefi")
    yield env
    _finish(env)


def _guest_variables(env: Env, name: str) -> str:
    each = f"for v in Note*-{VENDOR}; do [ -e $v ] && cat $v | tail -c +5 && echo; done; true"
    listing = env.run("exec", name, "--", "sh", "-c", f"{MOUNT}; cd {EFIVARS}; {each}")
    return " ".join(sorted(listing.stdout.split()))


def _write_variable(env: Env, name: str, value: str) -> None:
    env.run("exec", name, "--", "sh", "-c", f"{MOUNT}; printf '\\007\\000\\000\\000{value}' "
            f"> {EFIVARS}/Note{value}-{VENDOR}")  # fmt: skip


def test_a_debian_guest_under_ovmf_keeps_its_variables_and_sees_its_tpm(fw: Env) -> None:
    fw.run("launch", "e1", "--firmware", "uefi", "--tpm")
    seen = fw.run("exec", "e1", "--", "cat", "/sys/class/tpm/tpm0/tpm_version_major")
    assert seen.stdout.strip() == "2"
    _write_variable(fw, "e1", "one")
    assert "Noteone" in variables(_vm_dir(fw, "e1") / "efivars.fd")
    fw.run("stop", "e1")
    fw.run("start", "e1")
    assert _guest_variables(fw, "e1") == "one"

    fw.run("snapshot", "create", "e1", "s1")
    _write_variable(fw, "e1", "two")
    assert _guest_variables(fw, "e1") == "one two"
    fw.run("snapshot", "restore", "e1", "s1")
    assert _guest_variables(fw, "e1") == "one"
    assert "Notetwo" not in variables(_vm_dir(fw, "e1") / "efivars.fd")

    fw.run("clone", "e1", "c2", "--snapshot", "s1")
    assert _guest_variables(fw, "c2") == "one"
    assert fw.run("exec", "c2", "--", "ls", "/sys/class/tpm").stdout.split() == ["tpm0"]
    fw.run("rm", "-f", "c2", "e1")
    assert processes.under(fw.home) == []


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
    refused("launch", "m1", "--tpm", says="add --firmware uefi")
    refused("launch", "m1", "--firmware", "uefi", "--profile", "micro", says="add --profile pc")
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
