"""Looking at a pc VM's screen from a test: its pixels, and a real VNC client's login.

:func:`screenshot` runs ``bungalow screenshot NAME -`` and hands back the PNG as a
Pillow image (what the firmware and installer tests look at); :func:`vnc_login`
speaks RFB 3.8 with VNC authentication (RFC 6143 7.2.2: the password is the DES
key, each byte's bits mirrored, and the server's 16-byte challenge is encrypted
with it) through to a first framebuffer update.
"""

from __future__ import annotations

import io
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from PIL import Image

from tests.conftest import BUNGALOW, Env

RFB_VERSION = b"RFB 003.008\n"
VNC_AUTHENTICATION = 2


def screenshot(env: Env, vm: str) -> Image.Image:
    """What ``vm``'s display shows now, decoded (RGB)."""
    png = subprocess.run(
        [*BUNGALOW, "screenshot", vm, "-"], env=env.env, capture_output=True, check=True
    ).stdout
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.convert("RGB")


def lit_pixels(image: Image.Image) -> int:
    """How many pixels are not black."""
    histogram = image.convert("L").histogram()
    return sum(histogram[1:])


@dataclass(frozen=True)
class VncSession:
    """What a VNC login got: the framebuffer's size, its name, the first update's type."""

    width: int
    height: int
    name: str
    first_message: int


class VncRefused(Exception):
    """The server said no: the reason it gave."""


def _des_key(password: str) -> bytes:
    key = password.encode().ljust(8, b"\0")[:8]
    mirrored = bytes(int(f"{byte:08b}"[::-1], 2) for byte in key)
    return mirrored * 3  # three equal DES keys: single DES, as VNC authentication uses


def _exactly(sock: ByteStream, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"the server hung up after {len(data)} of {count} bytes")
        data += chunk
    return data


def vnc_login(address: tuple[str, int] | Path, password: str, timeout: float = 60) -> VncSession:
    """Log in at ``address`` (host and port, or a Unix socket) with ``password`` and ask for
    the whole framebuffer; VncRefused when the server refuses, OSError when nothing listens."""
    if isinstance(address, Path):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        sock.connect(str(address))
    else:
        sock = socket.create_connection(address, timeout=timeout)
    with sock:
        return vnc_login_over(sock, password)


class ByteStream(Protocol):
    """What a VNC login reads and writes: a socket, or a websocket made to look like one."""

    def recv(self, count: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...


def vnc_login_over(sock: ByteStream, password: str) -> VncSession:
    """Log in over ``sock``, already connected to a VNC server (see :func:`vnc_login`)."""
    version = _exactly(sock, 12)
    assert version == RFB_VERSION, version
    sock.sendall(RFB_VERSION)
    (count,) = _exactly(sock, 1)
    if count == 0:
        raise VncRefused(_reason(sock))
    offered = _exactly(sock, count)
    assert VNC_AUTHENTICATION in offered, f"the server offers {list(offered)}"
    sock.sendall(bytes([VNC_AUTHENTICATION]))
    challenge = _exactly(sock, 16)
    cipher = Cipher(TripleDES(_des_key(password)), modes.ECB()).encryptor()
    sock.sendall(cipher.update(challenge) + cipher.finalize())
    (result,) = struct.unpack(">I", _exactly(sock, 4))
    if result != 0:
        raise VncRefused(_reason(sock))
    sock.sendall(b"\x01")  # ClientInit: share the desktop
    width, height = struct.unpack(">HH", _exactly(sock, 4))
    _exactly(sock, 16)  # the pixel format
    (name_length,) = struct.unpack(">I", _exactly(sock, 4))
    name = _exactly(sock, name_length).decode()
    sock.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))  # FramebufferUpdateRequest
    (first,) = _exactly(sock, 1)
    return VncSession(width, height, name, first)


def _reason(sock: ByteStream) -> str:
    (length,) = struct.unpack(">I", _exactly(sock, 4))
    return _exactly(sock, length).decode(errors="replace")
