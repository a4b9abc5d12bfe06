"""A pc VM's screen and keyboard: screenshot, vnc, send-keys and type."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from bungalow.cli.common import AsJson, VmName, client
from bungalow.cli.output import print_json, say
from bungalow.errors import UserError

_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """``\\n`` is Enter, ``\\t`` Tab and ``\\\\`` a backslash, as ``type`` reads its text;
    any other backslash stays as typed."""
    return _ESCAPE.sub(lambda match: _ESCAPES.get(match[1], match[0]), text)


def screenshot(
    name: VmName,
    file: Annotated[str, typer.Argument(help="The PNG file to write; - for standard output.")],
) -> None:
    """Save what the pc VM's display shows now as a PNG."""
    png = client().screenshot(name)
    if file == "-":
        sys.stdout.buffer.write(png)
        sys.stdout.buffer.flush()
        return
    path = Path(file)
    if path.is_dir():
        raise UserError(f"{file} is a folder; name the PNG file to write, such as screen.png.")
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(png)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"Could not write {file}: {exc.strerror}.") from None


def vnc(name: VmName, as_json: AsJson = False) -> None:
    """Open a one-time VNC endpoint on 127.0.0.1 and print it with its password.

    The first viewer to connect within 5 minutes gets in; the endpoint then closes,
    and the password stops working once that viewer leaves. Run it again for another.
    """
    endpoint = client().open_vnc(name)
    if as_json:
        print_json(endpoint)
        return
    say(endpoint["url"])
    say(f"password: {endpoint['password']}")


def send_keys(
    name: VmName,
    keys: Annotated[
        list[str],
        typer.Argument(help="Keys or combinations pressed in turn: ret, f2, ctrl-alt-delete..."),
    ],
) -> None:
    """Press keys on the pc VM's keyboard (QEMU's key names, joined with - to press at once)."""
    client().send_keys(name, keys)


def type_(
    name: VmName,
    text: Annotated[str, typer.Argument(help="What to type; \\n is Enter, \\t Tab, \\\\ a \\.")],
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="The guest's keyboard layout: us or de (German). It must match the guest's.",
        ),
    ] = "us",
) -> None:
    """Type text on the pc VM's keyboard, key by key, as a guest with --layout reads it."""
    client().type_text(name, unescape(text), layout)


def register(app: typer.Typer) -> None:
    app.command()(screenshot)
    app.command()(vnc)
    app.command("send-keys")(send_keys)
    app.command("type")(type_)
