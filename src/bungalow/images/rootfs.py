"""A Debian root file system for a guest, made by mmdebstrap, and the suite's cloud kernel.

The kernel is downloaded, not installed: installing ``linux-image-*`` would pull
in initramfs-tools and build an initramfs the guest never uses (bungalow makes
its own, see :mod:`bungalow.images.initramfs`). :mod:`bungalow.images.kernel`
then unpacks it beside the new system.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections import deque
from pathlib import Path

from bungalow.arch import ARCH_INFO, Arch, binfmt_registered
from bungalow.errors import ImageError, UserError
from bungalow.images._tools import Progress, find_tool, no_space_error
from bungalow.images.recipes import Recipe

#: Set this to a Debian mirror URL to build from it instead of deb.debian.org.
MIRROR_ENV = "BUNGALOW_DEBIAN_MIRROR"
#: With a mirror set, the security archive to add (``none``: none, for a mirror or proxy
#: whose copy of one architecture's security archive is out of step with its index).
SECURITY_MIRROR_ENV = "BUNGALOW_DEBIAN_SECURITY_MIRROR"
SECURITY_MIRROR = "http://security.debian.org/debian-security"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# Merged /usr from the start where the suite has the usr-is-merged package
# (bookworm on), rather than through the usrmerge converter, which would drag
# perl (25 MB) into every image; bullseye stays unmerged as it was released.
_MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/maybe-merged-usr")

# Runs on the host as mmdebstrap's customize hook, "$1" being the new root file
# system, while that system's apt still has its package lists: it resolves the
# recipe's kernel metapackage ($BUNGALOW_KERNEL_PACKAGE: linux-image-cloud-amd64...)
# to the versioned kernel package and downloads that package, without installing
# it, into $BUNGALOW_KERNEL_DIR.
_KERNEL_HOOK = r"""set -eu
real=$(chroot "$1" apt-cache depends "$BUNGALOW_KERNEL_PACKAGE" \
    | sed -n 's/^ *Depends: \(linux-image-[^ <>]*\).*/\1/p' | head -n 1)
[ -n "$real" ] || { echo "E: $BUNGALOW_KERNEL_PACKAGE depends on no kernel package" >&2; exit 1; }
echo "bungalow: kernel package $real"
chroot "$1" sh -c 'cd /tmp && apt-get download -q "$0"' "$real"
mv "$1"/tmp/linux-image-*.deb "$BUNGALOW_KERNEL_DIR"/
"""

# systemd-resolved's postinst (server images) points /etc/resolv.conf at its stub,
# which no resolved answers inside the chroot: the kernel hook's download would find
# no name server. The host's copy stands in until images/server.py links it back.
_RESOLV_HOOK = r"""set -eu
if [ -L "$1/etc/resolv.conf" ]; then
    rm "$1/etc/resolv.conf"
    cp /etc/resolv.conf "$1/etc/resolv.conf"
fi
"""

# dpkg leaves documentation, manual pages and translations out of the image
# (and out of whatever the guest installs later, as the setting stays in it).
_DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)

# mmdebstrap's "I:" lines in the order it prints them, with the stage a user
# sees and the fraction of the whole build done when the line appears.
_MILESTONES = (
    ("running apt-get update", "reading package lists", 0.02),
    ("downloading packages", "downloading packages", 0.07),
    ("extracting archives", "unpacking packages", 0.12),
    ("installing essential", "installing packages", 0.35),
    ("installing remaining", "installing packages", 0.45),
    ("running --customize-hook", "downloading the kernel", 0.66),
    ("cleaning package lists", "cleaning up", 0.70),
)
BOOTSTRAP_DONE = 0.72

_NETWORK_ERRORS = (
    "Temporary failure resolving",
    "Could not resolve",
    "Failed to fetch",
    "Unable to connect",
    "Could not connect",
    "Connection failed",
    "Connection timed out",
    "Network is unreachable",
)

_HOSTS = """127.0.0.1\tlocalhost
::1\t\tlocalhost ip6-localhost ip6-loopback
ff02::1\t\tip6-allnodes
ff02::2\t\tip6-allrouters
"""


def mirror_lines(suite: str) -> list[str]:
    """The apt sources to build from: none (mmdebstrap's own defaults) unless a mirror is set.

    mmdebstrap's default is deb.debian.org plus the suite's -updates and
    -security archives, which is what a Debian host is configured with too.
    """
    mirror = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    if not mirror:
        return []
    security = os.environ.get(SECURITY_MIRROR_ENV, "").strip().rstrip("/") or SECURITY_MIRROR
    lines = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main"]
    if security != "none":
        lines.append(f"deb {security} {suite}-security main")
    return lines


def mmdebstrap_argv(recipe: Recipe, target: Path) -> list[str]:
    """The command that makes ``target`` (a new directory) into the recipe's root file system."""
    argv = [
        find_tool("unshare"),
        "--mount",
        "--propagation=private",
        find_tool("mmdebstrap"),
        "--mode=root",
        "--variant=minbase",
        f"--architectures={ARCH_INFO[recipe.arch].debian}",
        f"--include={','.join(recipe.packages)}",
        f"--hook-dir={_MERGED_USR_HOOKS}",
        *(f"--dpkgopt={option}" for option in _DPKG_OPTIONS),
        *([f"--customize-hook={_RESOLV_HOOK}"] if recipe.flavour == "server" else []),
        f"--customize-hook={_KERNEL_HOOK}",
        recipe.suite,
        str(target),
        *mirror_lines(recipe.suite),
    ]
    return argv


def bootstrap(
    recipe: Recipe, target: Path, kernel_dir: Path, *, log: Path, progress: Progress
) -> None:
    """Run mmdebstrap, streaming its milestones to ``progress`` and its output to ``log``.

    It runs in a private mount namespace (``unshare --mount``): the /proc, /sys
    and /dev it mounts inside the new system vanish with it even if it is
    killed, so removing a failed build can never reach into the host's /dev.
    """
    if os.geteuid() != 0:
        raise ImageError("Building an image needs root (mmdebstrap and chroot); run it as root.")
    if not binfmt_registered(recipe.arch):
        raise binfmt_missing(recipe.arch)
    if not _MERGED_USR_HOOKS.is_dir():
        raise ImageError(f"{_MERGED_USR_HOOKS} is missing; install a newer mmdebstrap.")
    # mmdebstrap leaves temporary GnuPG homes in $TMPDIR when it fails or is
    # killed: give it one inside the build's work directory, removed with it.
    tmpdir = target.parent / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "BUNGALOW_KERNEL_DIR": str(kernel_dir),
        "BUNGALOW_KERNEL_PACKAGE": recipe.kernel_package,
        "LC_ALL": "C.UTF-8",
        "TMPDIR": str(tmpdir),
    }
    tail: deque[str] = deque(maxlen=40)
    with (
        log.open("w") as log_file,
        subprocess.Popen(
            mmdebstrap_argv(recipe, target),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,
            umask=0o022,  # a guest's files get Debian's modes, whatever our caller's umask
        ) as process,
    ):
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log_file.write(line)
                tail.append(line.rstrip())
                _report_milestone(line, progress)
        finally:
            if process.poll() is None:
                _kill_process_group(process)
            process.wait()
    if process.returncode != 0:
        raise _bootstrap_error(recipe, list(tail), target, log)


def binfmt_missing(arch: Arch) -> UserError:
    """The sentence for building an image whose programs this host cannot run (a 4xx:
    the host is set up short of what the build asks)."""
    handler = ARCH_INFO[arch].binfmt
    return UserError(
        f"Building a {arch} image runs its programs through qemu-user-static, and no "
        f"binfmt_misc handler {handler} is registered; install qemu-user-static and "
        f"binfmt-support and run `update-binfmts --enable {handler}` (scripts/install does "
        "both, mounting binfmt_misc first if needed)."
    )


def _kill_process_group(process: subprocess.Popen[str]) -> None:
    """Kill mmdebstrap and the apt and dpkg it started, and wait until they are gone.

    Its children write into the new root file system; removing it while one
    still runs would fail or leave files behind.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _report_milestone(line: str, progress: Progress) -> None:
    if not line.startswith("I: "):
        return
    for marker, stage, fraction in _MILESTONES:
        if marker in line:
            progress(stage, fraction)
            return


def _bootstrap_error(recipe: Recipe, tail: list[str], target: Path, log: Path) -> ImageError:
    text = "\n".join(tail)
    if "No space left on device" in text:
        return no_space_error(target.parent)
    if any(marker in text for marker in _NETWORK_ERRORS):
        mirror = os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
        return ImageError(
            f"Could not download Debian {recipe.suite} packages from {mirror}; check the "
            f"network (or set {MIRROR_ENV} to a reachable mirror) and try again."
        )
    errors = [line[3:] for line in tail if line.startswith("E: ")] or tail[-1:] or ["no output"]
    return ImageError(
        f"mmdebstrap could not build Debian {recipe.suite} ({errors[-1].rstrip('.')}); "
        f"its output is in {log}."
    )


def configure(rootfs: Path) -> None:
    """Write the files a VM on QEMU's user-mode network needs to resolve names."""
    _replace(rootfs / "etc/resolv.conf", "nameserver 10.0.2.3\n")
    _replace(rootfs / "etc/hostname", "bungalow\n")
    _replace(rootfs / "etc/hosts", _HOSTS)


def _replace(path: Path, text: str) -> None:
    # Unlink first: the file may be a symlink, and writing through it could
    # reach a file of the host (mmdebstrap copies the host's resolv.conf).
    path.unlink(missing_ok=True)
    path.write_text(text)
    path.chmod(0o644)  # readable by every guest user, whatever the builder's umask


def guest_python(rootfs: Path) -> str | None:
    """The guest's python3 version ("3.11"), read from where its standard library lives."""
    versions = sorted(
        path.name.removeprefix("python")
        for path in (rootfs / "usr/lib").glob("python3.*")
        if (path / "os.py").is_file()
    )
    return versions[-1] if versions else None


def pretty_name(rootfs: Path) -> str:
    """PRETTY_NAME from the guest's os-release, read without following absolute symlinks."""
    for candidate in ("usr/lib/os-release", "etc/os-release"):
        path = rootfs / candidate
        if path.is_file() and not path.is_symlink():
            for line in path.read_text().splitlines():
                key, _, value = line.partition("=")
                if key == "PRETTY_NAME":
                    words = shlex.split(value)
                    return words[0] if words else ""
    return ""
