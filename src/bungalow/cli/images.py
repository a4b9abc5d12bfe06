"""``bungalow image``: build, ls, import, rm."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from bungalow.cli.common import client
from bungalow.cli.output import progress, say, size, table

app = typer.Typer(no_args_is_help=True)


@app.command()
def build(
    name: Annotated[str, typer.Argument(help="debian-12, debian-13 or debian-11.")] = "debian-12",
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if present.")] = False,
) -> None:
    """Build an image from Debian packages (skipped when it is already there)."""
    image = progress(client().build_image(name, force), f"building {name}")
    say(f"{image['name']} {image['id'][:12]} ready" if image else f"{name} ready")


@app.command("ls")
def list_images() -> None:
    """List images."""
    table(
        ["NAME", "ID", "KIND", "OS", "SIZE", "CREATED", "USED BY"],
        (
            [
                image["name"], image["id"][:12], image["kind"], image["os_release"] or "-",
                size(image["size"]),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(image["created"])),
                ",".join(image["used_by"]) or "-",
            ]
            for image in client().list_images()
        ),
    )  # fmt: skip


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="A raw or qcow2 disk file.")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Image name.")] = None,
) -> None:
    """Import a disk to boot with the pc profile."""
    image_name = name or path.name.split(".")[0].lower()
    image = client().import_image(path, image_name)
    say(f"{image['name']} {image['id'][:12]} imported")


@app.command("rm")
def remove(refs: Annotated[list[str], typer.Argument(help="Image names or ids.")]) -> None:
    """Remove images no VM uses."""
    for ref in refs:
        client().remove_image(ref)
        say(f"{ref} is removed")
