"""The operating systems bungalow can build images of, each from one Debian suite.

A recipe is data, not code: the builder in :mod:`bungalow.images.build` turns
any recipe into an image the same way, so adding a suite is adding a line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from bungalow.errors import NotFoundError

#: Bump whenever the way a recipe becomes an image changes (packages, files
#: written into the root file system, kernel handling), so that images built by
#: an older builder can be told apart through their manifest.
RECIPE_VERSION = 5

#: The packages every image gets on top of mmdebstrap's ``minbase`` variant
#: (Essential packages plus apt). The agent needs python3; the rest is what a
#: person expects on a small server and what ``apt-get install`` needs to work.
BASE_PACKAGES: tuple[str, ...] = (
    "python3",  # the guest agent runs as PID 1 under it
    "iproute2",  # ip, ss: the network is set up and inspected with these
    "e2fsprogs",  # resize2fs: the agent grows the root file system to the disk size
    "procps",  # ps, free, top, kill
    "ca-certificates",  # https mirrors and downloads inside the guest
    "kmod",  # modprobe for the kernel modules shipped in /lib/modules
    "netbase",  # /etc/services and /etc/protocols, read by getaddrinfo users
    "libnss-myhostname",  # the VM's own name resolves without rewriting /etc/hosts
)

DEFAULT_RECIPE = "debian-12"


@dataclass(frozen=True)
class Recipe:
    """How to build one image: a Debian suite and the packages installed on it."""

    name: str
    suite: str
    description: str
    packages: tuple[str, ...] = BASE_PACKAGES


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe("debian-12", "bookworm", "Debian 12 (bookworm), minimal, with python3"),
        Recipe("debian-13", "trixie", "Debian 13 (trixie), minimal, with python3"),
        Recipe("debian-11", "bullseye", "Debian 11 (bullseye), minimal, with python3"),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``, or a NotFoundError listing the ones there are."""
    try:
        return RECIPES[name]
    except KeyError:
        known = ", ".join(sorted(RECIPES))
        raise NotFoundError(
            f"There is no image recipe called {name!r}; the recipes are {known}."
        ) from None
