"""The recipes an image can be built from."""

from __future__ import annotations

import pytest

from bungalow.errors import NotFoundError
from bungalow.images import DEFAULT_RECIPE, RECIPE_VERSION, RECIPES, get_recipe
from bungalow.names import validate_name


def test_the_three_debian_suites_are_there() -> None:
    suites = {name: recipe.suite for name, recipe in RECIPES.items()}
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
    with pytest.raises(NotFoundError, match="debian-11, debian-11-server, debian-12"):
        get_recipe("ubuntu-24")


def test_the_default_stays_micro() -> None:
    assert get_recipe(DEFAULT_RECIPE).flavour == "micro"
    assert all(name.endswith("-server") for name, r in RECIPES.items() if r.flavour == "server")
