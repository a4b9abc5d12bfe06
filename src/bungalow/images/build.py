"""Building a ``linux`` image from a recipe: Debian root file system, cloud kernel, qcow2 disk.

Everything happens in a staging directory inside the store and reaches the
store with one rename, so a failed or interrupted build leaves nothing behind
but the log of its last attempt (``.logs/<name>.log`` in the store).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bungalow.arch import DEFAULT_ARCH, binfmt_registered, emulator_missing
from bungalow.errors import ImageError, UserError
from bungalow.images._tools import Progress, is_no_space, no_space_error, require_space
from bungalow.images.disk import convert_to_qcow2, make_ext4
from bungalow.images.guest_busybox import install_guest_busybox
from bungalow.images.kernel import install_kernel
from bungalow.images.recipes import Recipe, get_recipe
from bungalow.images.rootfs import (
    BOOTSTRAP_DONE,
    binfmt_missing,
    bootstrap,
    configure,
    guest_python,
    pretty_name,
)
from bungalow.images.server import check_hygiene, configure_server
from bungalow.images.store import DISK, Image, ImageStore

#: The most a build holds on disk at once: the root file system, the kernel
#: package unpacked, the ext4 image and the qcow2 made from it.
BUILD_SPACE = 1536 << 20


def build_image(
    store: ImageStore,
    name: str,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> Image:
    """Build the image of recipe ``name`` into ``store`` and give it that name.

    An image already called ``name`` is returned as it is unless ``force`` or
    it was made by an older builder (another RECIPE_VERSION); a rebuild moves
    the name to the new image and leaves the old one,
    which VMs may still use, in the store without a name. ``progress`` gets
    ``(stage, fraction of the whole build)`` as the build goes.
    """
    recipe = get_recipe(name)
    check_buildable(recipe)
    report = _forward_only(progress)
    with store.build_lock(name):
        if store.has(name) and not force:
            current = store.get(name)
            if current.recipe_version == recipe.version:
                report("already built", 1.0)
                return current
        try:
            with store.staging() as staging:
                require_space(staging, BUILD_SPACE)
                image = _build(store, recipe, staging, report)
        except OSError as error:
            if is_no_space(error):
                raise no_space_error(store.root) from None
            raise ImageError(
                f"Building the image {name} failed: {error.strerror or error} "
                f"({error.filename or store.root})."
            ) from error
    report("done", 1.0)
    return image


def check_buildable(recipe: Recipe) -> None:
    """UserError, before anything is made, when this host could build ``recipe`` but never
    run it (its QEMU is missing) or cannot run its programs while building (no binfmt)."""
    missing = emulator_missing(recipe.arch)
    if missing is not None:
        raise UserError(f"The recipe {recipe.name} makes an image of {recipe.arch}: {missing}")
    if not binfmt_registered(recipe.arch):
        raise binfmt_missing(recipe.arch)


def _build(store: ImageStore, recipe: Recipe, staging: Path, report: Progress) -> Image:
    rootfs = staging / "rootfs"
    kernel_dir = staging / "kernel"
    staged = staging / "image"
    kernel_dir.mkdir()
    staged.mkdir()
    log = store.root / ".logs" / f"{recipe.name}.log"
    log.parent.mkdir(exist_ok=True)

    report(f"building Debian {recipe.suite}", 0.0)
    bootstrap(recipe, rootfs, kernel_dir, log=log, progress=report)
    report("installing the kernel", BOOTSTRAP_DONE)
    kernel_version, kernel_file = install_kernel(kernel_dir, rootfs, staged)
    if recipe.arch != DEFAULT_ARCH:
        install_guest_busybox(rootfs, staged)
    configure(rootfs)
    if recipe.flavour == "server":
        report("configuring systemd", 0.75)
        configure_server(recipe, rootfs)
        check_hygiene(recipe, rootfs)
    os_release = pretty_name(rootfs)
    python = guest_python(rootfs)
    # What provisioning can count on (bungalow.provision): looked for, not taken from the recipe.
    cloud_init = os.path.lexists(rootfs / "usr/bin/cloud-init")
    sshd = os.path.lexists(rootfs / "usr/sbin/sshd")

    report("making the file system", 0.78)
    raw = staging / "root.ext4"
    make_ext4(rootfs, raw)
    shutil.rmtree(rootfs)
    report("converting to qcow2", 0.84)
    convert_to_qcow2(
        raw,
        "raw",
        staged / DISK,
        progress=lambda done: report("converting to qcow2", 0.84 + 0.1 * done),
    )
    raw.unlink()

    report("hashing the image", 0.95)
    return store.commit(
        staged,
        recipe.name,
        {
            "kind": "linux",
            "os_release": os_release,
            "kernel_version": kernel_version,
            "python": python,
            "cloud_init": cloud_init,
            "sshd": sshd,
            "kernel": kernel_file,
            "source": f"Debian {recipe.suite}, recipe {recipe.name} version {recipe.version}",
            "suite": recipe.suite,
            "recipe": recipe.name,
            "recipe_version": recipe.version,
            "flavour": recipe.flavour,
            "arch": recipe.arch,
            "packages": list(recipe.packages),
        },
    )


def _forward_only(progress: Progress | None) -> Progress:
    """Wrap ``progress`` so that its fraction never goes back and stays within 0..1."""
    highest = 0.0

    def report(stage: str, fraction: float) -> None:
        nonlocal highest
        highest = min(1.0, max(highest, fraction))
        if progress is not None:
            progress(stage, highest)

    return report
