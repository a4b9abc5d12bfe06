"""The operating systems bungalow can build images of, each from one Debian suite.

A recipe is data, not code: the builder in :mod:`bungalow.images.build` turns
any recipe into an image the same way, so adding a suite is adding a line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bungalow.arch import DEFAULT_ARCH, Arch
from bungalow.errors import NotFoundError

#: What boots a guest: ``micro`` images switch from bungalow's initramfs straight to
#: the agent as PID 1 (no init system, the fast path sandboxes use); ``server`` images
#: switch to systemd, which starts the agent through udev (images/server.py).
Flavour = Literal["micro", "server"]

#: Bump whenever the way a recipe becomes a micro image changes (packages, files
#: written into the root file system, kernel handling), so that images built by
#: an older builder can be told apart through their manifest.
RECIPE_VERSION = 5
#: The same for server images, kept apart so that a change to the server build
#: does not make every cached micro image stale.
SERVER_RECIPE_VERSION = 4

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

#: What a server image adds: systemd as PID 1 and what a person expects of a
#: small Debian server (anchors-next.md 2.3). systemd-resolved is a package of its
#: own from bookworm on; bullseye's is inside systemd (:func:`server_packages`).
SERVER_PACKAGES: tuple[str, ...] = (
    "systemd-sysv",  # systemd as /sbin/init
    "udev",  # devices, and the rule that starts the agent (images/server.py)
    "dbus",  # systemctl, hostnamectl, loginctl talk to it
    "openssh-server",
    "cloud-init",  # NoCloud seeds: users, keys, packages, files at first boot
    "qemu-guest-agent",  # what libvirt and plain-QEMU tools expect to find
    "less",
    "vim-tiny",
    "curl",
    "iputils-ping",
    "sudo",
)

#: What an image of another architecture adds: the initramfs needs a static busybox built
#: for the guest's CPU, taken from the guest's own root file system (images/foreign.py);
#: ``file`` shows what a 32-bit or ARM program is (``file /bin/ls``).
FOREIGN_PACKAGES: tuple[str, ...] = ("busybox-static", "file")

#: The kernel metapackage each architecture's images boot: Debian's cloud kernels where
#: they exist (amd64, arm64: virtio and little else), the 686 kernel for i386.
KERNEL_PACKAGES: dict[Arch, str] = {
    "x86_64": "linux-image-cloud-amd64",
    "i386": "linux-image-686",
    "aarch64": "linux-image-cloud-arm64",
}

DEFAULT_RECIPE = "debian-12"


@dataclass(frozen=True)
class Recipe:
    """How to build one image: a Debian suite, its flavour and the packages installed on it."""

    name: str
    suite: str
    description: str
    packages: tuple[str, ...] = BASE_PACKAGES
    flavour: Flavour = "micro"
    #: The guest's architecture, as QEMU names it (bungalow/arch.py).
    arch: Arch = DEFAULT_ARCH

    @property
    def kernel_package(self) -> str:
        """The kernel metapackage mmdebstrap's hook resolves and downloads."""
        return KERNEL_PACKAGES[self.arch]

    @property
    def version(self) -> int:
        """The builder version recorded in the image's manifest (``recipe_version``)."""
        return SERVER_RECIPE_VERSION if self.flavour == "server" else RECIPE_VERSION


def server_packages(suite: str) -> tuple[str, ...]:
    """The packages of a ``server`` image of ``suite``: the base, then what a server adds."""
    extra = SERVER_PACKAGES if suite == "bullseye" else (*SERVER_PACKAGES, "systemd-resolved")
    return (*BASE_PACKAGES, *extra)


def _server(name: str, suite: str, release: str) -> Recipe:
    return Recipe(
        name,
        suite,
        f"Debian {release} ({suite}) server: systemd, openssh-server, cloud-init",
        server_packages(suite),
        "server",
    )


def _foreign(name: str, suite: str, release: str, arch: Arch) -> Recipe:
    bits = "32-bit x86 (i386), 686 kernel" if arch == "i386" else "64-bit ARM (arm64)"
    return Recipe(
        name,
        suite,
        f"Debian {release} ({suite}), minimal, with python3, {bits}",
        (*BASE_PACKAGES, *FOREIGN_PACKAGES),
        arch=arch,
    )


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe("debian-12", "bookworm", "Debian 12 (bookworm), minimal, with python3"),
        Recipe("debian-13", "trixie", "Debian 13 (trixie), minimal, with python3"),
        Recipe("debian-11", "bullseye", "Debian 11 (bullseye), minimal, with python3"),
        _server("debian-12-server", "bookworm", "12"),
        _server("debian-13-server", "trixie", "13"),
        _server("debian-11-server", "bullseye", "11"),
        _foreign("debian-12-i386", "bookworm", "12", "i386"),
        _foreign("debian-11-i386", "bullseye", "11", "i386"),
        _foreign("debian-12-arm64", "bookworm", "12", "aarch64"),
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
