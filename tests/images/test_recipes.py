"""The recipes an image can be built from."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.errors import NotFoundError
from bungalow.images import DEFAULT_RECIPE, RECIPE_VERSION, RECIPES, get_recipe
from bungalow.images.rootfs import MIRROR_ENV, SECURITY_MIRROR_ENV, mirror_lines, mmdebstrap_argv
from bungalow.names import validate_name


def test_the_three_debian_suites_are_there() -> None:
    suites = {name: r.suite for name, r in RECIPES.items() if r.arch == "x86_64"}
    assert {name: suite for name, suite in suites.items() if "server" not in name} == {
        "debian-11": "bullseye",
        "debian-12": "bookworm",
        "debian-13": "trixie",
    }
    assert DEFAULT_RECIPE == "debian-12"
    assert isinstance(RECIPE_VERSION, int)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_can_run_the_agent(name: str) -> None:
    recipe = get_recipe(name)
    assert validate_name(recipe.name, what="image") == name
    assert {"python3", "iproute2", "e2fsprogs", "procps", "ca-certificates"} <= set(recipe.packages)
    # The kernel is downloaded beside the system, never installed into it.
    assert not any(package.startswith(("linux-image", "initramfs")) for package in recipe.packages)
    assert recipe.description


def test_an_unknown_recipe_names_the_known_ones() -> None:
    with pytest.raises(NotFoundError, match="debian-11, debian-11-i386, debian-11-server, deb"):
        get_recipe("ubuntu-24")


def test_the_default_stays_micro() -> None:
    assert get_recipe(DEFAULT_RECIPE).flavour == "micro"
    assert all(name.endswith("-server") for name, r in RECIPES.items() if r.flavour == "server")


@pytest.mark.parametrize(
    ("name", "arch", "debian", "kernel"),
    [
        ("debian-12-i386", "i386", "i386", "linux-image-686"),
        ("debian-11-i386", "i386", "i386", "linux-image-686"),
        ("debian-12-arm64", "aarch64", "arm64", "linux-image-cloud-arm64"),
        ("debian-12", "x86_64", "amd64", "linux-image-cloud-amd64"),
    ],
)
def test_recipes_of_other_architectures(name: str, arch: str, debian: str, kernel: str) -> None:
    recipe = get_recipe(name)
    assert (recipe.arch, recipe.kernel_package) == (arch, kernel)
    argv = mmdebstrap_argv(recipe, Path("/tmp/x"))
    assert f"--architectures={debian}" in argv
    # The initramfs runs the guest's own static busybox, not the host's.
    assert ("busybox-static" in recipe.packages) == (arch != "x86_64")


def test_a_security_mirror_can_be_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://mirror.example/debian/")
    assert mirror_lines("bookworm")[-1].startswith("deb http://security.debian.org/")
    monkeypatch.setenv(SECURITY_MIRROR_ENV, "none")
    assert mirror_lines("bookworm") == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
    ]
