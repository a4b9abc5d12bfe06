"""``bungalow dashboard``: the web dashboard's one-time login URL, or the admin's token."""

from __future__ import annotations

from typing import Annotated

import typer

from bungalow.cli.common import AsJson, client
from bungalow.cli.output import print_json, say


def dashboard(
    token: Annotated[
        bool,
        typer.Option(
            "--token", help="Print the admin's token instead, to log in from another browser."
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Print a URL that logs you in to the web dashboard, once, within 5 minutes.

    The dashboard listens where config.toml's [dashboard] listen says (127.0.0.1:8250 by
    default); if it is not open yet, bungalowd opens it now on that loopback address.
    With TLS, a second line gives the certificate's SHA-256 fingerprint, to compare with
    the one the browser shows. A daemon restart logs every browser out.
    """
    if token:
        secret = client().dashboard_token()
        if as_json:
            print_json({"token": secret})
        else:
            say(secret)
        return
    opened = client().dashboard()
    if as_json:
        print_json(opened)
        return
    say(opened["url"])
    if opened["fingerprint"]:
        say(f"TLS certificate SHA-256 fingerprint: {opened['fingerprint']}")


def register(app: typer.Typer) -> None:
    app.command()(dashboard)
