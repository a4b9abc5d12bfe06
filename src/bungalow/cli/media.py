"""``bungalow media``: eject and insert an installer VM's CD (live while it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bungalow.cli.common import VmName, client
from bungalow.cli.output import say

app = typer.Typer(no_args_is_help=True)


def medium_ref(text: str) -> str:
    """What the daemon takes for an ISO: a file named by a path (with a ``/``, or ending in
    ``.iso``, or existing here) becomes its absolute path; anything else is an image's name."""
    path = Path(text).expanduser()
    if "/" in text or text.lower().endswith(".iso") or path.is_file():
        return str(path.absolute())
    return text


@app.command()
def eject(name: VmName) -> None:
    """Empty the VM's CD-ROM drive (at once if it runs; else for its next start)."""
    vm = client().eject_media(name)
    say(f"{vm['name']}'s CD-ROM drive is empty")


@app.command()
def insert(
    name: VmName,
    medium: Annotated[str, typer.Argument(help="An ISO image's name, or an ISO file's path.")],
) -> None:
    """Put an ISO in the VM's CD-ROM drive; a file is imported into the image store first."""
    vm = client().insert_media(name, medium_ref(medium))
    say(f"{vm['media']} is in {vm['name']}'s CD-ROM drive")
