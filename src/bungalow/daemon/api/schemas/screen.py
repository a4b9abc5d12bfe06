"""The shapes of a pc VM's screen and keyboard routes (api/screen.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from bungalow.daemon.api.schemas.fields import choice, plain
from bungalow.daemon.api.schemas.requests import Request
from bungalow.qemu.keys import LAYOUTS

#: A key or a combination of keys: QEMU qcodes joined with ``-`` (``ctrl-alt-delete``).
KeyCombo = Annotated[str, plain(64, "a key combination")]
#: Text to type: at most 4096 characters, each one the layout can type.
TypedText = Annotated[str, plain(4096, "text to type")]
Layout = Annotated[str, choice(LAYOUTS, "a keyboard layout:")]


class KeysRequest(Request):
    keys: Annotated[list[KeyCombo], Field(min_length=1, max_length=256)] = Field(
        description="key combinations pressed in turn, such as ret or ctrl-alt-delete"
    )


class TypeRequest(Request):
    text: TypedText = Field(description="the characters to type; a newline is Enter")
    layout: Layout = Field(default="us", description="the keyboard layout the guest uses")


class VncInfo(BaseModel):
    """A one-time VNC endpoint: the first connection gets in with ``password``."""

    url: str = Field(description="vnc://127.0.0.1:PORT")
    host: str
    port: int
    password: str = Field(description="VNC authentication's password (8 characters)")
    expires_in: int = Field(description="seconds the endpoint waits for its one connection")
