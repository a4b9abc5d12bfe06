"""Building an image: its parts one by one, and how a failed or stopped build cleans up."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bungalow.errors import ImageError
from bungalow.images import ImageStore, build_image, get_recipe
from bungalow.images import build as build_module
from bungalow.images._tools import find_tool, tool_error
from bungalow.images.rootfs import (
    MIRROR_ENV,
    _bootstrap_error,
    configure,
    mirror_lines,
    mmdebstrap_argv,
    pretty_name,
)


def test_mmdebstrap_builds_a_minimal_system_with_the_recipe_packages(tmp_path: Path) -> None:
    recipe = get_recipe("debian-13")
    argv = mmdebstrap_argv(recipe, tmp_path / "rootfs")
    assert argv[:3] == [argv[0], "--mount", "--propagation=private"]
    assert "--variant=minbase" in argv
    assert f"--include={','.join(recipe.packages)}" in argv
    assert any(arg.startswith("--customize-hook=") and "apt-get download" in arg for arg in argv)
    assert argv[-2:] == ["trixie", str(tmp_path / "rootfs")]


def test_mirror_defaults_to_mmdebstrap_and_can_be_overridden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert mirror_lines("bookworm") == []
    monkeypatch.setenv(MIRROR_ENV, "http://mirror.example/debian/")
    lines = mirror_lines("bookworm")
    assert lines[0] == "deb http://mirror.example/debian bookworm main"
    assert lines[2].endswith("bookworm-security main")


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (
            ["E: Failed to fetch http://deb.debian.org/x  Could not resolve 'deb.debian.org'"],
            "Could not download Debian bookworm packages",
        ),
        (["tar: ./usr/lib/x: Cannot write: No space left on device"], "is full"),
        (["I: something", "E: mmdebstrap failed to run"], "(mmdebstrap failed to run)"),
        ([], "(no output)"),
    ],
)
def test_bootstrap_failures_become_one_sentence(
    tmp_path: Path, tail: list[str], expected: str
) -> None:
    error = _bootstrap_error(get_recipe("debian-12"), tail, tmp_path / "rootfs", tmp_path / "log")
    assert isinstance(error, ImageError)
    assert expected in error.message
    assert error.message.count(". ") == 0 and error.message.endswith(".")


def test_guest_files_are_written_without_following_symlinks(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    host_file = tmp_path / "host-resolv.conf"
    host_file.write_text("nameserver 192.0.2.1\n")
    os.symlink(host_file, rootfs / "etc/resolv.conf")
    configure(rootfs)
    assert host_file.read_text() == "nameserver 192.0.2.1\n"
    assert (rootfs / "etc/resolv.conf").read_text() == "nameserver 10.0.2.3\n"
    assert "localhost" in (rootfs / "etc/hosts").read_text()
    assert (rootfs / "etc/hostname").read_text().strip()


def test_pretty_name_comes_from_os_release(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text(
        'NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
    )
    assert pretty_name(tmp_path) == "Debian GNU/Linux 12 (bookworm)"
    assert pretty_name(tmp_path / "nothing") == ""


def test_progress_only_moves_forward() -> None:
    seen: list[tuple[str, float]] = []
    report = build_module._forward_only(lambda stage, done: seen.append((stage, done)))
    for stage, done in [("a", 0.2), ("b", 0.1), ("c", 1.5)]:
        report(stage, done)
    assert seen == [("a", 0.2), ("b", 0.2), ("c", 1.0)]


def test_a_tool_running_out_of_space_names_the_directory(tmp_path: Path) -> None:
    error = tool_error(
        "converting", "qemu-img: error while writing: No space left on device", tmp_path
    )
    assert (
        error.message
        == f"The disk holding {tmp_path} is full; free some space there and try again."
    )
    other = tool_error("making the ext4 file system", "mkfs.ext4: bad option\n\n", tmp_path)
    assert other.message == "Making the ext4 file system failed: mkfs.ext4: bad option."


def test_a_missing_program_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImageError, match=r"README.*mmdebstrap-not-here"):
        find_tool("mmdebstrap-not-here")


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mmdebstrap") is None,
    reason="building images needs root and mmdebstrap",
)


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".staging"))


def _gnupg_homes() -> set[Path]:
    """What mmdebstrap leaves in /tmp when it is not given a TMPDIR of its own."""
    return set(Path(tempfile.gettempdir()).glob("mmdebstrap.*"))


@needs_root
def test_an_unreachable_mirror_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/debian")
    store = ImageStore(tmp_path / "images")
    before = _gnupg_homes()
    with pytest.raises(ImageError, match="Could not download Debian bookworm packages"):
        build_image(store, "debian-12")
    assert _leftovers(store.root) == [] and store.list() == []
    assert _gnupg_homes() == before
    assert "127.0.0.1:9" in (store.root / ".logs/debian-12.log").read_text()


@needs_root
def test_an_interrupted_build_leaves_nothing_behind(tmp_path: Path) -> None:
    class Interrupted(Exception):
        pass

    def progress(stage: str, fraction: float) -> None:
        if stage == "unpacking packages":
            raise Interrupted

    store = ImageStore(tmp_path / "images")
    before = _gnupg_homes()
    with pytest.raises(Interrupted):
        build_image(store, "debian-12", progress=progress)
    assert _leftovers(store.root) == [] and store.list() == []
    assert _gnupg_homes() == before
    mmdebstrap = subprocess.run(["pgrep", "-f", str(store.root)], capture_output=True)
    assert mmdebstrap.returncode == 1, "a process of the build still runs"
