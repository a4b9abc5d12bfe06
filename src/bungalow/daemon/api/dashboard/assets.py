"""The dashboard's files: the pages under ``/ui/`` and four npm packages under ``/vendor/``.

The pages are ``src/bungalow/web/static`` (plain ES modules, no build step); the
vendored libraries are what ``npm ci`` put in ``src/bungalow/web/node_modules`` for the
packages in :data:`VENDORED` only: nothing else of node_modules, nor anything outside
those folders (Starlette's StaticFiles resolves each path and refuses one that leaves
its folder), is served. Browsers load an ES module only with a JavaScript MIME type,
which Python 3.11's ``mimetypes`` does not give ``.mjs``: set here.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

import bungalow

WEB = Path(bungalow.__file__).resolve().parent / "web"
VENDORED = ("@xterm/xterm", "@xterm/addon-fit", "@novnc/novnc", "uplot")
_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
}


class _Files(StaticFiles):
    """StaticFiles with the MIME types browsers require, no caching of stale pages, and a
    404 (not a 500) while its folder does not exist."""

    async def check_config(self) -> None:
        if self.directory is not None and Path(self.directory).is_dir():
            await super().check_config()

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = _TYPES.get(Path(full_path).suffix)
        if media_type is not None:
            charset = "; charset=utf-8" if media_type.startswith("text/") else ""
            response.headers["content-type"] = media_type + charset
        response.headers["cache-control"] = "no-cache"
        response.headers["x-content-type-options"] = "nosniff"
        return response


def mounts(web: Path = WEB) -> list[Mount]:
    """``/ui`` (``web/static``) and one ``/vendor/<package>`` each (``web/node_modules``);
    a folder that does not exist (yet) answers 404."""
    vendor = web / "node_modules"
    return [
        Mount("/ui", _Files(directory=web / "static", html=True, check_dir=False)),
        *(
            Mount(f"/vendor/{package}", _Files(directory=vendor / package, check_dir=False))
            for package in VENDORED
        ),
    ]
