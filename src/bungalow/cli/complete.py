"""Shell completion of names: VMs, images and snapshots, asked of the daemon if one runs.

Typer's mechanism does the rest (``bungalow --install-completion`` for bash, zsh or fish):
the shell runs ``bungalow`` with ``_BUNGALOW_COMPLETE`` set on every Tab, and the functions
here give the candidates for a name being typed. As that happens on every keystroke they
never start a daemon (:meth:`~bungalow.client.http.Client.if_running`), give up after a
second, and offer nothing, silently, on any error: a completion must not print.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import click

from bungalow.client.http import Client


def _names(fetch: Callable[[Client], Iterable[str]], incomplete: str) -> list[str]:
    """The names ``fetch`` finds that start with ``incomplete``; none without a daemon."""
    try:
        api = Client.if_running()
        if api is None:
            return []
        try:
            return sorted(name for name in fetch(api) if name.startswith(incomplete))
        finally:
            api.close()
    except Exception:  # a completion prints nothing, whatever went wrong
        return []


def vm_names(incomplete: str) -> list[str]:
    """Names of the VMs the caller may see."""
    return _names(lambda api: (vm["name"] for vm in api.list_vms()), incomplete)


def image_names(incomplete: str) -> list[str]:
    """Names of the images, and of the recipes that build one on first use."""
    return _names(
        lambda api: {*(image["name"] for image in api.list_images()), *api.recipes()}, incomplete
    )


def snapshot_names(ctx: click.Context, incomplete: str) -> list[str]:
    """Names of the snapshots of the VM given before (the ``vm`` argument)."""
    vm = ctx.params.get("vm")
    if not isinstance(vm, str):
        return []
    return _names(lambda api: (snap["name"] for snap in api.list_snapshots(vm)), incomplete)
