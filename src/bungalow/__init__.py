"""bungalow: real virtual machines on your own Linux host."""

from __future__ import annotations

from bungalow.errors import BungalowError

__version__ = "0.1.0"
__all__ = ["BungalowError", "__version__"]
