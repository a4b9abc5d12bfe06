"""Fixtures shared by the whole suite.

Images are immutable and slow to build, so every test run on a machine shares one
image store (``BUNGALOW_IMAGES``, default /var/cache/bungalow-test/images); each
test that needs a daemon gets its own short-pathed data directory. A test that
boots no VM takes ``installation``, which needs no image and never builds one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
IMAGE_CACHE = Path(os.environ.get("BUNGALOW_TEST_IMAGES", "/var/cache/bungalow-test/images"))
#: The systemd image the server, provisioning and consolidation tests boot.
SERVER_IMAGE = "debian-12-server"
#: An extracted linux-image-*-cloud-amd64, if someone left one; else the kernel cache.
PREEXTRACTED_KERNEL = Path("/tmp/k/x")
KERNEL_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bungalow-tests"
BUNGALOW = [sys.executable, "-m", "bungalow.cli.main"]
#: Every test daemon's config.toml ends with this unless its test is about KSM: KSM is
#: host-wide, and test daemons turning it on would make every test beside them (and other
#: suites on the host) share the CPUs with ksmd (tests/daemon/policies/test_ksm_vms.py).
NO_KSM = '\n[memory]\nksm = "off"\n'


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop (no plugin needed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


class Env:
    """One isolated bungalow installation: data directory, shared images, a CLI runner."""

    def __init__(self, home: Path, images: Path = IMAGE_CACHE) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "BUNGALOW_HOME": str(home),
            "BUNGALOW_IMAGES": str(images),
            "COLUMNS": "200",
        }

    def run(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*BUNGALOW, *args],
            env=self.env,
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"bungalow {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def get(self, path: str) -> httpx.Response:
        """GET ``path`` from this installation's running daemon, on its socket."""
        transport = httpx.HTTPTransport(uds=str(self.home / "bungalowd.sock"))
        with httpx.Client(transport=transport, base_url="http://bungalowd") as client:
            return client.get(path)

    def daemon_pid(self) -> int | None:
        try:
            return int((self.home / "bungalowd.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def qemu_pids(self) -> list[int]:
        """QEMU processes whose command line mentions this data directory."""
        home = str(self.home).encode()
        return [
            pid for pid, _, cmdline in _processes() if b"qemu-system" in cmdline and home in cmdline
        ]

    def daemon_tracebacks(self) -> str:
        """Tracebacks in the daemon's log: each is a bug, whatever the test checked."""
        try:
            log = (self.home / "bungalowd.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return log if "Traceback" in log else ""

    def zombies(self) -> list[int]:
        """Exited children the daemon has not collected."""
        daemon = str(self.daemon_pid())
        return [
            pid
            for pid, stat, _ in _processes()
            if stat[stat.rfind(")") + 2 :].split()[:2] == ["Z", daemon]
        ]

    def shutdown(self) -> None:
        """Kill every QEMU and the daemon of this installation, and take down what its
        private networks left in the kernel (they outlive a daemon by design), so a test
        that failed half way leaks nothing into the tests after it."""
        home = str(self.home).encode()
        for pid, _, cmdline in _processes():
            if home in cmdline and any(
                p in cmdline for p in (b"qemu-system", b"dnsmasq", b"swtpm")
            ):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        daemon = self.daemon_pid()
        if daemon:
            with contextlib.suppress(OSError):
                os.kill(daemon, signal.SIGTERM)
        if os.geteuid() == 0:
            _sweep_networks(self.home)


def _sweep_networks(home: Path) -> None:
    """Remove the bridges, nft table and /etc/hosts block of the daemon of ``home``."""
    from bungalow.host.net.hostsfile import write_block
    from bungalow.host.net.naming import HostNames

    names = HostNames(home)
    for link in Path("/sys/class/net").iterdir():
        if names.owns_bridge(link.name):
            subprocess.run(["ip", "link", "del", link.name], capture_output=True, check=False)
    subprocess.run(
        ["nft", "delete", "table", "inet", names.table], capture_output=True, check=False
    )
    with contextlib.suppress(OSError):
        write_block(names.hosts_marker(), [])


def _processes() -> Iterator[tuple[int, str, bytes]]:
    """(pid, /proc/PID/stat, /proc/PID/cmdline) of every process still there to read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), (entry / "stat").read_text(), (entry / "cmdline").read_bytes()
        except OSError:
            continue


@pytest.fixture(scope="session")
def image_cache() -> Path:
    """Make sure the default image exists in the shared store (built once per machine)."""
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="bgw-", dir="/tmp"))
    env = Env(home)
    try:
        env.run("image", "build", "debian-12", timeout=1800)
    finally:
        env.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    return IMAGE_CACHE


def _new_env(own_images: bool = False) -> Env:
    """A fresh data directory, with the shared image store or an empty one of its own."""
    # Short paths: QEMU's Unix sockets must fit in 108 bytes.
    home = Path(tempfile.mkdtemp(prefix="bgw-", dir="/tmp"))
    # No warm sandbox pool unless a test asks for one: every pooled VM is a QEMU
    # that tests counting processes would see, and CPU the others would miss. No KSM.
    (home / "config.toml").write_text("[sandboxes]\npool = 0\n" + NO_KSM)
    return Env(home, home / "images" if own_images else IMAGE_CACHE)


@pytest.fixture(scope="session")
def server_image(image_cache: Path) -> Path:
    """debian-12-server in the shared image cache, built the first time a session needs it."""
    home = Path(tempfile.mkdtemp(prefix="bgw-", dir="/tmp"))
    env = Env(home, image_cache)
    try:
        env.run("image", "build", SERVER_IMAGE, timeout=1800)
    finally:
        env.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    return image_cache


@pytest.fixture
def installation() -> Iterator[Env]:
    """A fresh installation whose daemon boots no VM: an empty image store of its own, so
    no image is built for it (``pytest -m "not vm"`` on a fresh machine stays quick)."""
    env = _new_env(own_images=True)
    yield env
    _finish(env)


@pytest.fixture
def bw(image_cache: Path) -> Iterator[Env]:
    """A fresh installation for one test; everything it started is killed afterwards."""
    env = _new_env()
    yield env
    _finish(env)


def _finish(env: Env) -> None:
    tracebacks = env.daemon_tracebacks()
    env.shutdown()
    shutil.rmtree(env.home, ignore_errors=True)
    assert not tracebacks, f"bungalowd logged a traceback:\n{tracebacks[-3000:]}"


@pytest.fixture(scope="module")
def bw_module(image_cache: Path) -> Iterator[Env]:
    """One installation shared by a module's tests (to boot fewer VMs)."""
    env = _new_env()
    yield env
    _finish(env)


@pytest.fixture(scope="session")
def kernel() -> Path:
    """A Debian cloud kernel (its modules are under ``kernel.parents[1] / "lib/modules"``):
    from /tmp/k when it is there, else from a cache filled once with ``apt-get download`` +
    ``dpkg-deb -x``."""
    found = _find_kernel(PREEXTRACTED_KERNEL) or _find_kernel(KERNEL_CACHE / "x")
    if found is not None:
        return found
    try:
        return _download_kernel(KERNEL_CACHE)
    except (OSError, subprocess.CalledProcessError, StopIteration) as error:
        pytest.skip(f"no Debian cloud kernel in /tmp/k and apt-get download failed: {error}")


def _find_kernel(root: Path) -> Path | None:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    return kernels[-1] if kernels else None


def _download_kernel(cache: Path) -> Path:
    """Fetch and unpack the Debian cloud kernel package (no root needed)."""
    depends = subprocess.run(
        ["apt-cache", "depends", "linux-image-cloud-amd64"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    package = next(
        line.split()[-1] for line in depends.splitlines() if "Depends: linux-image-" in line
    )
    download = cache / "download"
    download.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", package], cwd=download, check=True, capture_output=True)
    deb = next(download.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / "x")], check=True)
    kernel = _find_kernel(cache / "x")
    assert kernel is not None
    return kernel
