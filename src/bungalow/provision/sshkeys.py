"""SSH public keys as ``authorized_keys`` takes them, checked before they are stored.

A key line is ``[options] type base64 [comment]`` (sshd(8), AUTHORIZED_KEYS FILE
FORMAT); the base64 blob starts with the key type again as an SSH string
(RFC 4253, 6.6), which is how a truncated or pasted-wrong key is told apart from
a real one without running ``ssh-keygen -l``. A private key, the usual mistake
(``--ssh-key ~/.ssh/id_ed25519``), is recognised by its PEM armour and refused
with a sentence saying which file to give instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from bungalow.errors import UserError

#: Key types OpenSSH 9 accepts in authorized_keys (ssh-keygen -l lists them).
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-dss",
    }
)
#: At most this many keys per VM, each at most this long (an RSA-16384 key is ~2.8 KB).
MAX_KEYS = 32
MAX_KEY_LENGTH = 8192
_PRIVATE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def check_public_keys(text: str, *, what: str = "The SSH key") -> list[str]:
    """The public keys in ``text`` (an ``id_*.pub`` or authorized_keys file), one per line,
    normalised to ``type base64 [comment]``; UserError with one sentence for a private key,
    an empty file, or a line that is not a public key."""
    if _PRIVATE.search(text):
        raise UserError(
            f"{what} is a private key; give the public key instead (the file ending in .pub, "
            "such as ~/.ssh/id_ed25519.pub), and keep the private key to yourself."
        )
    keys: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keys.append(parse_public_key(line, what=f"{what}, line {number},"))
    if not keys:
        raise UserError(
            f"{what} holds no public key; give a file such as ~/.ssh/id_ed25519.pub "
            "(make one with `ssh-keygen -t ed25519`)."
        )
    return keys


def parse_public_key(line: str, *, what: str = "The SSH key") -> str:
    """One ``authorized_keys`` line as ``type base64 [comment]`` (options dropped: bungalow
    installs keys as given keys, not restricted ones), or UserError."""
    if len(line) > MAX_KEY_LENGTH:
        raise UserError(
            f"{what} is {len(line)} characters long, more than a public key "
            f"(at most {MAX_KEY_LENGTH}); give a .pub file."
        )
    words = line.split()
    start = next((i for i, word in enumerate(words) if word in KEY_TYPES), None)
    if start is None or start + 1 >= len(words):
        raise UserError(
            f"{what} is not an SSH public key (no key type such as ssh-ed25519 followed by "
            "the key); give a file such as ~/.ssh/id_ed25519.pub."
        )
    kind, blob = words[start], words[start + 1]
    if _blob_type(blob) != kind:
        raise UserError(
            f"{what} says {kind} but its key data is not a {kind} key (cut short or "
            "mistyped?); copy the .pub file again."
        )
    return " ".join([kind, blob, *words[start + 2 :]])


def fingerprint(key: str) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it, for a key :func:`parse_public_key` took."""
    blob = base64.b64decode(key.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _blob_type(blob: str) -> str | None:
    """The key type named inside a key's base64 data, or None if it is not such data."""
    try:
        data = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(data) < 4:
        return None
    length = int.from_bytes(data[:4], "big")
    if length > len(data) - 4:
        return None
    try:
        return data[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None
