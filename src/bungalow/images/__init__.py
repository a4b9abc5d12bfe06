"""Images: building Debian images, importing disks, and the store that holds them.

The public surface is re-exported here; the daemon needs nothing else::

    store = ImageStore(DataDir.from_env().images)
    image = build_image(store, "debian-12", progress=bar.update)
    initrd = store.initrd_for(image)          # kernel boot: image.kernel + initrd
"""

from bungalow.images.build import build_image
from bungalow.images.recipes import DEFAULT_RECIPE, RECIPE_VERSION, RECIPES, Recipe, get_recipe
from bungalow.images.store import Image, ImageKind, ImageStore

__all__ = [
    "DEFAULT_RECIPE",
    "RECIPES",
    "RECIPE_VERSION",
    "Image",
    "ImageKind",
    "ImageStore",
    "Recipe",
    "build_image",
    "get_recipe",
]
