"""The dashboard's pages without a browser: every module they import exists, every API
route they call is one the daemon has, their lists match the daemon's, and their pure
functions (run by node) give what the API wants.

Milliseconds each; the browser tests (C's, beside this file) drive the same pages for real.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from bungalow.daemon.api import app as api_app
from bungalow.daemon.api.dashboard.assets import VENDORED, WEB
from bungalow.daemon.api.schemas import LimitsUpdate
from bungalow.qemu.keys import LAYOUTS

HERE = Path(__file__).resolve().parent
STATIC = WEB / "static"
NODE_MODULES = WEB / "node_modules"
PAGES = [*sorted(STATIC.rglob("*.js")), STATIC / "index.html"]
#: Routes the dashboard listener serves itself (api/dashboard/app.py), beside the API's.
DASHBOARD_ROUTES = {"/v1/vms/{name}/vnc/ws"}


def _text(path: Path) -> str:
    """The file without its JavaScript comments (they name paths too, in prose)."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
    return re.sub(r"^\s*//.*$", "", text, flags=re.M)


def _imports(source: str) -> list[str]:
    """Specifiers of static and dynamic imports, and the files <script>/<link> load (those
    relative to the page made ./ so that they read as imports do)."""
    found = re.findall(r"""(?:\bfrom\s+|\bimport\s*\(\s*)["']([^"'$`]+)["']""", source)
    for url in re.findall(r"""(?:src|href)="(/vendor/[^"]+|[^":#]+\.(?:js|css))\"""", source):
        found.append(url if url.startswith(("/", ".")) else "./" + url)
    return found


def test_every_import_resolves_to_a_file_served() -> None:
    """Relative imports name files beside the page; /vendor/ ones a vendored package's file
    that npm ci installed; nothing else (no bare specifier: there is no bundler)."""
    for page in PAGES:
        for spec in _imports(_text(page)):
            if spec.startswith("/vendor/"):
                package = next((p for p in VENDORED if spec.startswith(f"/vendor/{p}/")), None)
                assert package is not None, f"{page.name} imports {spec}, not a vendored package"
                target = NODE_MODULES / spec.removeprefix("/vendor/")
            else:
                assert spec.startswith("."), f"{page.name} imports {spec!r}: a bare specifier"
                target = (page.parent / spec).resolve()
                assert STATIC in target.parents, f"{page.name} imports {spec} outside static/"
            assert target.is_file(), f"{page.name} imports {spec}, which is not there ({target})"


def _api_paths() -> list[re.Pattern[str]]:
    paths = {route.path for module in api_app._ROUTERS for route in module.router.routes}
    return [
        re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        for path in paths | DASHBOARD_ROUTES
    ]


def _called_paths(source: str) -> list[str]:
    """The API paths a page calls: /v1 literals, vmPath(name, SUFFIX) and socketUrl(name, SUFFIX),
    with each ${...} as one path segment."""
    called = re.findall(r"""["'`](/v1/[^"'`?]*)""", source)
    called += [
        "/v1/vms/NAME" + suffix
        for suffix in re.findall(r"""(?:vmPath|socketUrl)\([^,()]+,\s*["'`]([^"'`]*)""", source)
    ]
    called += ["/v1/vms/NAME" for _ in re.findall(r"vmPath\([^,()]+\)", source)]
    return [re.sub(r"\$\{[^}]*\}", "X", path) for path in called]


def test_every_api_path_the_pages_call_exists() -> None:
    routes = _api_paths()
    seen = 0
    for page in PAGES:
        for path in _called_paths(_text(page)):
            seen += 1
            assert any(route.match(path) for route in routes), f"{page.name} calls {path}"
    assert seen > 20  # the scan found the calls (a changed helper name would find none)


def test_lists_match_the_daemons() -> None:
    """The screen's layouts are the type route's; the limits form has LimitsUpdate's fields."""
    screen = _text(STATIC / "js" / "views" / "vm_screen.js")
    layouts = re.search(r"export const LAYOUTS = \[([^\]]*)\]", screen)
    assert layouts is not None
    assert re.findall(r'"([^"]+)"', layouts.group(1)) == list(LAYOUTS)
    limits = _text(STATIC / "js" / "views" / "vm_limits.js")
    assert re.findall(r'^  \["([a-z_]+)", "', limits, re.M) == list(LimitsUpdate.model_fields)


def test_pure_functions_give_what_the_api_wants() -> None:
    node = shutil.which("node")
    assert node is not None, "node is missing: run ./scripts/install"
    done = subprocess.run(
        [node, str(HERE / "pages_logic.mjs")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
