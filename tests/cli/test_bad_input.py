"""Bad input: one clear sentence, a non-zero exit, and nothing left behind."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import Env
from tests.support import unique_disk

pytestmark = pytest.mark.vm


def _assert_clean_refusal(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def _assert_nothing_left(bw: Env) -> None:
    assert bw.run("ls", "-q").stdout.strip() == ""
    assert bw.qemu_pids() == []
    vms = bw.home / "vms"
    assert not vms.exists() or list(vms.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["launch", "web", "--image", "no-such-image"], ["no-such-image", "bungalow image"]),
        (["launch", "Bad,Name"], ["not valid"]),
        (["launch", "a=b"], ["not valid"]),
        (["launch", "has space"], ["not valid"]),
        (["launch", "big", "--memory", "100T"], ["memory"]),
        (["launch", "wide", "--cpus", "512"], ["--cpus 512", "from 1 to 255"]),
        (["launch", "mem", "--memory", "lots"], ['--memory "lots"', "give a size"]),
        (["launch", "tiny", "--disk", "100M"], ["smaller than the image"]),
        (["launch", "port", "-p", "99999:80"], ["port"]),
        (["launch", "acc", "--accel", "warp"], ["warp"]),
        (["launch", "lab", "--label", "purpose"], ["KEY=VALUE"]),
        (["launch", "lab", "--label", "Bad Key=x"], ["label key"]),
        (["launch", "own", "--owner", "a b"], ["owner"]),
    ],
)
def test_refused_launches_leave_nothing(bw_module: Env, args: list[str], words: list[str]) -> None:
    _assert_clean_refusal(bw_module.run(*args, check=False), *words)
    _assert_nothing_left(bw_module)


def test_unknown_vm_commands(bw_module: Env) -> None:
    for args in (["exec", "ghost", "--", "true"], ["stop", "ghost"], ["rm", "ghost"]):
        _assert_clean_refusal(bw_module.run(*args, check=False), "ghost", "bungalow ls")


def test_host_port_in_use_is_refused(bw_module: Env) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = bw_module.run("launch", "clash", "-p", f"{port}:80", check=False)
    _assert_clean_refusal(result, str(port), "in use")
    _assert_nothing_left(bw_module)


def test_duplicate_name_is_refused_and_the_first_vm_is_untouched(bw_module: Env) -> None:
    bw_module.run("launch", "twin")
    result = bw_module.run("launch", "twin", check=False)
    _assert_clean_refusal(result, "already exists")
    assert bw_module.run("exec", "twin", "--", "true").returncode == 0
    bw_module.run("rm", "twin")
    _assert_nothing_left(bw_module)


def test_missing_qemu_is_explained(bw: Env, tmp_path: Path) -> None:
    # /bin is /usr/bin on Debian 12: offer every program there except QEMU's emulators.
    for program in Path("/usr/bin").iterdir():
        if not program.name.startswith("qemu-system"):
            (tmp_path / program.name).symlink_to(program)
    bw.env["PATH"] = str(tmp_path)
    result = bw.run("launch", "noqemu", check=False)
    _assert_clean_refusal(
        result,
        "qemu-system-x86_64, which is not installed; install the Debian package qemu-system-x86",
    )
    _assert_nothing_left(bw)


def test_full_disk_is_explained(image_cache: Path) -> None:
    full = Path(tempfile.mkdtemp(prefix="bgw-full-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(full)], check=True)
    bw = Env(full)
    try:
        bw.run("ls")  # the daemon starts while there is still room for its database
        with open(full / "filler", "wb") as handle, contextlib.suppress(OSError):
            handle.write(os.urandom(8 << 20))
        result = bw.run("launch", "nospace", check=False)
        _assert_clean_refusal(result, "free")
        assert bw.qemu_pids() == []
        assert list((full / "vms").iterdir()) == []
    finally:
        bw.shutdown()
        subprocess.run(["umount", "-l", str(full)], check=False)
        full.rmdir()


def test_comma_in_imported_disk_path_is_harmless(bw: Env, tmp_path: Path) -> None:
    weird = tmp_path / "a,b=c d"
    weird.mkdir()
    disk = weird / "disk.qcow2"
    unique_disk(disk, fmt="qcow2")
    result = bw.run("image", "import", str(disk), "--name", "weird", check=False)
    assert result.returncode == 0, result.stderr
    assert "weird" in bw.run("image", "ls").stdout
    bw.run("image", "rm", "weird")


def test_refused_provisioning_leaves_nothing(bw_module: Env, tmp_path: Path) -> None:
    """Not YAML, YAML without its header, a private key given as --ssh-key, and user-data for
    an image without cloud-init: one sentence each, before anything is made."""
    (tmp_path / "bad.yaml").write_text("#cloud-config\nruncmd:\n  - a: b: c\n")
    (tmp_path / "bare.yaml").write_text("runcmd: [[true]]\n")
    (tmp_path / "good.yaml").write_text("#cloud-config\nruncmd: [[true]]\n")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    cases = [
        (["--cloud-init", tmp_path / "bad.yaml"], ["not valid YAML at line 3, column 9"]),
        (["--cloud-init", tmp_path / "bare.yaml"], ["add #cloud-config as its first line"]),
        (["--cloud-init", tmp_path / "nowhere.yaml"], ["cannot be read"]),
        (["--ssh-key", key], ["private key", ".pub"]),
        (["--cloud-init", tmp_path / "good.yaml"], ["does not run cloud-init", "debian-12-server"]),
    ]
    for options, words in cases:
        result = bw_module.run("launch", "prov", *map(str, options), check=False)
        _assert_clean_refusal(result, *words)
        _assert_nothing_left(bw_module)
