"""``bungalow image``: build, ls, import, rm."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import click
import typer

from bungalow.cli.common import AsJson, client, each
from bungalow.cli.complete import image_names
from bungalow.cli.output import print_json, progress, say, size, table

app = typer.Typer(no_args_is_help=True)


@app.command()
def build(
    name: Annotated[
        str,
        typer.Argument(
            help="debian-12, debian-13, debian-11 (micro: no init system), or the same "
            "with -server (systemd, sshd, cloud-init).",
        ),
    ] = "debian-12",
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if present.")] = False,
) -> None:
    """Build an image from Debian packages (skipped when it is already there)."""
    image = progress(client().build_image(name, force), f"building {name}")
    say(f"{image['name']} {image['id'][:12]} ready" if image else f"{name} ready")


@app.command("ls")
def list_images(as_json: AsJson = False) -> None:
    """List images."""
    images = client().list_images()
    if as_json:
        print_json(images)
        return
    table(
        ["NAME", "ID", "KIND", "FLAVOUR", "ARCH", "OS", "SIZE", "CREATED", "USED BY"],
        (
            [
                image["name"], image["id"][:12], image["kind"],
                image["flavour"] if image["kind"] == "linux" else "-",
                image["arch"],
                image["os_release"] or "-",
                size(image["size"]),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(image["created"])),
                ",".join(image["used_by"]) or "-",
            ]
            for image in images
        ),
    )  # fmt: skip


@app.command("import")
def import_(
    path: Annotated[
        Path,
        typer.Argument(
            help="A disk file (raw, qcow2, vmdk, vdi or vhdx, as qemu-img reads it) or an ISO."
        ),
    ],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Image name.")] = None,
    firmware: Annotated[
        str,
        typer.Option(
            "--firmware",
            click_type=click.Choice(["bios", "uefi", "uefi-secure"]),
            help="What the disk boots with; VMs from it get this firmware.",
        ),
    ] = "bios",
    vars_file: Annotated[
        Path | None,
        typer.Option("--vars", help="Its UEFI variable store (boot entries), of that firmware."),
    ] = None,
) -> None:
    """Import a disk to boot with the pc profile (converted to qcow2 by qemu-img), or an ISO
    for `launch --iso`."""
    image_name = name or path.name.split(".")[0].lower()
    before = {image["name"]: image["id"] for image in client().list_images()}
    image = client().import_image(path, image_name, firmware=firmware, vars_file=vars_file)
    if before.get(image_name) == image["id"]:
        say(f"{image['name']} {image['id'][:12]} is already there, with this content")
    else:
        say(f"{image['name']} {image['id'][:12]} imported")


@app.command("rm")
def remove(
    refs: Annotated[
        list[str], typer.Argument(help="Image names or ids.", autocompletion=image_names)
    ],
) -> None:
    """Remove images no VM uses."""

    def remove_one(ref: str) -> str:
        client().remove_image(ref)
        return f"{ref} is removed"

    each(refs, remove_one)
