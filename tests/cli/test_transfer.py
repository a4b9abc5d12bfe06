"""`bungalow cp` with what users copy besides plain files: modes, links, /proc, devices."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Env

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def vm(bw_module: Env) -> str:
    bw_module.run("launch", "files", "--memory", "512M")
    return "files"


def _sh(bw: Env, vm: str, script: str) -> str:
    return bw.run("exec", vm, "--", "sh", "-c", script).stdout


def test_a_file_copied_out_keeps_its_mode(bw_module: Env, vm: str, tmp_path: Path) -> None:
    """An executable stays executable, also over an existing file; set-user-ID is dropped."""
    _sh(bw_module, vm, "printf '#!/bin/sh\\necho hi\\n' > /tmp/run.sh; chmod 755 /tmp/run.sh")
    _sh(bw_module, vm, "echo secret > /tmp/mine; chmod 640 /tmp/mine; chmod 4755 /tmp/run.sh")
    existing = tmp_path / "run.sh"
    existing.write_text("old\n")
    existing.chmod(0o600)
    bw_module.run("cp", f"{vm}:/tmp/run.sh", str(existing))
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755
    assert subprocess.run([str(existing)], capture_output=True, text=True).stdout == "hi\n"
    bw_module.run("cp", f"{vm}:/tmp/mine", str(tmp_path))
    assert stat.S_IMODE((tmp_path / "mine").stat().st_mode) == 0o640
    assert (tmp_path / "mine").read_text() == "secret\n"


def test_links_are_copied_as_links_unless_followed(bw_module: Env, vm: str, tmp_path: Path) -> None:
    """As `docker cp`: a link given as the source is copied as a link, -L copies what it
    points to, and links inside folders stay links, dangling or not, both ways."""
    link = tmp_path / "localtime"
    plain = bw_module.run("cp", f"{vm}:/etc/localtime", str(link))
    assert os.readlink(link) == _sh(bw_module, vm, "readlink /etc/localtime").strip()
    assert "copied the link" in plain.stderr and "-L" in plain.stderr
    followed = tmp_path / "zone"
    bw_module.run("cp", "-L", f"{vm}:/etc/localtime", str(followed))
    assert not followed.is_symlink() and followed.read_bytes().startswith(b"TZif")
    # Into the VM: a folder holding a link and a dangling link, then a dangling link alone.
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "data").write_text("x\n")
    (tree / "to-data").symlink_to("data")
    (tree / "broken").symlink_to("/nowhere")
    bw_module.run("cp", str(tree), f"{vm}:/tmp")
    assert _sh(bw_module, vm, "readlink /tmp/tree/to-data /tmp/tree/broken") == "data\n/nowhere\n"
    bw_module.run("cp", str(tree / "broken"), f"{vm}:/tmp/alone")
    assert _sh(bw_module, vm, "readlink /tmp/alone") == "/nowhere\n"
    refused = bw_module.run("cp", "-L", str(tree / "broken"), f"{vm}:/tmp/x", check=False)
    assert refused.returncode == 1
    assert "is a link to /nowhere, which does not exist on this host" in refused.stderr
    # And back out: the folder's links arrive as links.
    back = tmp_path / "back"
    bw_module.run("cp", f"{vm}:/tmp/tree", str(back))
    assert (os.readlink(back / "to-data"), os.readlink(back / "broken")) == ("data", "/nowhere")


def test_proc_and_sys_files_copy_what_reading_them_gives(
    bw_module: Env, vm: str, tmp_path: Path
) -> None:
    cpuinfo = tmp_path / "c"
    bw_module.run("cp", f"{vm}:/proc/cpuinfo", str(cpuinfo))
    assert b"processor" in cpuinfo.read_bytes()
    address = tmp_path / "a"
    bw_module.run("cp", f"{vm}:/sys/class/net/eth0/address", str(address))
    expected = _sh(bw_module, vm, "cat /sys/class/net/eth0/address")
    assert address.read_text() == expected and len(expected) == 18
    # A /sys file whose read fails (the driver has no such port id): a sentence, no file.
    refused = bw_module.run(
        "cp", f"{vm}:/sys/class/net/eth0/phys_port_id", str(tmp_path / "p"), check=False
    )
    assert refused.returncode == 1 and "failed: Operation not supported" in refused.stderr
    assert not (tmp_path / "p").exists()
    assert bw_module.run("ls", "-q").stdout.split() == [vm]  # the daemon is still there


def test_special_files_and_pseudo_folders_are_refused_in_one_sentence(
    bw_module: Env, vm: str, tmp_path: Path
) -> None:
    for source, what in (("/dev/zero", "character device"), ("/dev/vda", "block device")):
        result = bw_module.run("cp", f"{vm}:{source}", str(tmp_path / "out"), check=False)
        assert result.returncode == 1
        assert f"{source} in the VM {vm} is a {what}" in result.stderr
        assert len(result.stderr.splitlines()) == 1
    folder = bw_module.run("cp", f"{vm}:/proc/sys/kernel", str(tmp_path / "k"), check=False)
    assert folder.returncode == 1 and "is on a proc file system" in folder.stderr
    os.mkfifo(tmp_path / "fifo")
    upload = bw_module.run("cp", str(tmp_path / "fifo"), f"{vm}:/tmp/fifo", check=False)
    assert upload.returncode == 1 and "is a FIFO, not a file, folder or link" in upload.stderr
    assert sorted(os.listdir(tmp_path)) == ["fifo"], "a refused copy left something behind"
