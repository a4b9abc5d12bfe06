"""The daemon's image catalogue: build, import, list and remove images."""
