"""Real guests under OVMF: a Linux kernel that writes a UEFI variable and sees its TPM.

The guest is the suite's Debian cloud kernel (a bzImage, which OVMF loads
through fw_cfg) with a hand-written busybox initramfs whose /init mounts
efivarfs (a module of that kernel), reports the TPM and the variables it finds,
writes a variable named after the ``fwtest`` word of its command line (efivarfs
files are immutable once there, and busybox has no chattr), and powers off. The
vars file and swtpm state are the VM's own, as bungalow keeps them.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bungalow.errors import QemuError
from bungalow.host import processes
from bungalow.host.swtpm import start_swtpm, stop_swtpm
from bungalow.qemu.argv import RunFiles
from bungalow.qemu.firmware import resolve
from bungalow.qemu.firmware.varstore import variables
from bungalow.qemu.process import launch, pid_alive, read_pid, terminate
from tests.qemu.conftest import BUSYBOX, SpecFactory, _cpio_entry
from tests.support import wait_until

pytestmark = pytest.mark.vm

VENDOR = "6b6d0a8c-4d0b-4b3e-9f6a-2c1f0e5b7a11"
VARIABLE = "BungalowTest"
INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /sys /proc && mount -t sysfs sysfs /sys && mount -t proc proc /proc
insmod /efivarfs.ko
mount -t efivarfs efivarfs /sys/firmware/efi/efivars
echo "TPM=$(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null || echo none)"
echo "SECUREBOOT=$(dmesg | grep -o 'Secure boot [a-z]*')"
cd /sys/firmware/efi/efivars
for var in {VARIABLE}*-{VENDOR}; do [ -e $var ] && echo "FOUND=$(tail -c +5 $var)"; done
printf '\\007\\000\\000\\000%s' "$fwtest" > {VARIABLE}$fwtest-{VENDOR} && echo WROTE
echo FWTEST-DONE
poweroff -f
"""


@pytest.fixture(scope="module")
def uefi_initramfs(tmp_path_factory: pytest.TempPathFactory, kernel: Path) -> Path:
    modules = next(kernel.parents[1].glob("lib/modules/*/kernel/fs/efivarfs/efivarfs.ko*"))
    if not BUSYBOX.exists() or modules.suffix != ".ko":
        pytest.skip("needs /bin/busybox and the kernel's uncompressed efivarfs.ko")
    path = tmp_path_factory.mktemp("uefi") / "initrd.cpio"
    entries = [
        _cpio_entry("bin", 0o040755),
        _cpio_entry("dev", 0o040755),
        _cpio_entry("dev/console", 0o020600, rdev=(5, 1)),
        _cpio_entry("bin/busybox", 0o100755, BUSYBOX.read_bytes()),
        _cpio_entry("efivarfs.ko", 0o100644, modules.read_bytes()),
        _cpio_entry("init", 0o100755, INIT.encode()),
        _cpio_entry("TRAILER!!!", 0),
    ]
    path.write_bytes(b"".join(entries))
    return path


@pytest.fixture
def vm_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for pidfile in tmp_path.rglob("swtpm.pid"):
        stop_swtpm(pidfile)
    assert not processes.under(tmp_path), "a QEMU or swtpm outlived its test"


def boot_once(make_spec: SpecFactory, vm_dir: Path, initrd: Path, firmware: str, word: str,
              *, tpm: bool = False) -> str:  # fmt: skip
    """Boot the guest until it powers off; its console output."""
    pair = resolve(firmware)
    assert pair is not None
    vars_file = vm_dir / "efivars.fd"
    if not vars_file.exists():
        shutil.copyfile(pair.vars_template, vars_file)
    run_dir = vm_dir / "run"
    files = RunFiles(run_dir)
    tpm_fields = {}
    if tpm:
        tpm_fields = {"tpm_socket": files.swtpm_socket, "tpm_state": vm_dir / "tpm"}
    spec = make_spec(
        profile="pc", memory=512 << 20, initrd=initrd, run_dir=run_dir, firmware=pair,
        vars_file=vars_file, cmdline_extra=f"fwtest={word}", **tpm_fields,
    )  # fmt: skip
    files.console_log.unlink(missing_ok=True)
    if tpm:
        start_swtpm(vm_dir / "tpm", files.swtpm_socket, files.swtpm_pidfile)
    pid = launch(spec)
    try:
        wait_until(
            "the guest to power off",
            lambda: not pid_alive(pid, run_dir) and not read_pid(run_dir),
            timeout=180,
        )
    finally:
        terminate(pid, run_dir, timeout=2)
    return files.console_log.read_text(errors="replace")


def test_a_uefi_variable_written_in_the_guest_survives_a_restart_and_the_tpm_is_seen(
    make_spec: SpecFactory, vm_dir: Path, uefi_initramfs: Path
) -> None:
    first = boot_once(make_spec, vm_dir, uefi_initramfs, "uefi", "one", tpm=True)
    assert "FWTEST-DONE" in first and "WROTE" in first, first[-2000:]
    assert "TPM=2" in first  # tpm-crb, found through the ACPI tables OVMF installs
    assert "SECUREBOOT=Secure boot disabled" in first
    assert "FOUND=" not in first
    assert variables(vm_dir / "efivars.fd")[VARIABLE + "one"].data == b"one"
    # swtpm ends with its QEMU (--terminate) and kept its state in the VM's directory.
    wait_until("swtpm to end with its QEMU", lambda: not processes.under(vm_dir), timeout=30)
    assert (vm_dir / "tpm" / "tpm2-00.permall").is_file()

    second = boot_once(make_spec, vm_dir, uefi_initramfs, "uefi", "two", tpm=True)
    assert "FOUND=one" in second, second[-2000:]
    assert "TPM=2" in second
    assert variables(vm_dir / "efivars.fd")[VARIABLE + "two"].data == b"two"


def test_uefi_secure_boots_with_secure_boot_enabled(
    make_spec: SpecFactory, vm_dir: Path, uefi_initramfs: Path
) -> None:
    console = boot_once(make_spec, vm_dir, uefi_initramfs, "uefi-secure", "sb")
    assert "SECUREBOOT=Secure boot enabled" in console, console[-2000:]
    assert "FWTEST-DONE" in console
    enrolled = variables(vm_dir / "efivars.fd")
    assert {"PK", "KEK", "db"} <= set(enrolled) and enrolled[VARIABLE + "sb"].data == b"sb"


def test_qemu_refuses_a_vars_file_it_cannot_open(make_spec: SpecFactory, tmp_path: Path) -> None:
    pair = resolve("uefi")
    assert pair is not None
    spec = make_spec(profile="pc", firmware=pair, vars_file=tmp_path / "missing.fd")
    with pytest.raises(QemuError, match=r"missing\.fd"):
        launch(spec)
    assert not processes.under(tmp_path)
    assert subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True).returncode == 1
