"""The dashboard's TLS pair: the admin's (``tls_cert``, ``tls_key``) or a self-signed one
made once with Debian's ``openssl req`` in the data directory, and its fingerprint.

A self-signed certificate is what Proxmox and Cockpit start with too: the browser
warns once, and ``bungalow dashboard`` prints the SHA-256 fingerprint to compare
with the one the browser shows.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import ssl
import subprocess
from pathlib import Path

from bungalow.errors import UserError

#: Days a self-signed certificate lasts (ten years: it is pinned by its fingerprint).
DAYS = 3650


def self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """``folder/dashboard.crt`` and ``dashboard.key``, made once (an EC P-256 pair, for
    localhost, this host's name and ``host``); UserError if openssl fails."""
    cert, key = folder / "dashboard.crt", folder / "dashboard.key"
    if cert.is_file() and key.is_file():
        return cert, key
    names = {"DNS:localhost", f"DNS:{socket.gethostname()}", "IP:127.0.0.1"}
    try:
        names.add(f"IP:{ipaddress.ip_address(host)}")
    except ValueError:
        names.add(f"DNS:{host}")
    partial_cert, partial_key = cert.with_suffix(".crt.new"), key.with_suffix(".key.new")
    previous = os.umask(0o077)  # the key is readable by the daemon's user only
    try:
        done = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", str(DAYS),
             "-subj", "/CN=bungalow dashboard", "-addext",
             f"subjectAltName={','.join(sorted(names))}",
             "-keyout", str(partial_key), "-out", str(partial_cert)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise UserError(
            "openssl is not installed, and the dashboard needs it for a TLS certificate; "
            "install it (apt-get install openssl) or set tls_cert and tls_key."
        ) from None
    finally:
        os.umask(previous)
    if done.returncode != 0:
        raise UserError(
            f"openssl could not make the dashboard's certificate: {done.stderr.strip()}."
        )
    os.replace(partial_key, key)  # the key first: a cert without its key is never left
    os.replace(partial_cert, cert)
    return cert, key


def fingerprint(cert: Path) -> str:
    """The SHA-256 fingerprint of the (first) certificate in ``cert``, as browsers show it:
    ``AB:CD:...``."""
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
