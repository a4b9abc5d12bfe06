"""Running the host programs images are made with, and turning their failures into sentences.

Image building shells out to Debian's own tools (mmdebstrap, mkfs.ext4,
qemu-img, dpkg-deb). Their errors are many lines long; a user needs one
sentence that names what failed and what to do, so every call goes through
:func:`run_tool`.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from bungalow.errors import ImageError
from bungalow.units import format_size

#: How builds report progress: a stage a person can read, and the fraction of
#: the whole job done so far (0.0 to 1.0, never going back).
Progress = Callable[[str, float], None]

SETUP_HINT = "run the set-up command from the README"

#: The Debian package that brings each program, for the "not installed" message.
PACKAGE_OF = {
    "mmdebstrap": "mmdebstrap",
    "qemu-img": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
    "dpkg-deb": "dpkg",
    "busybox": "busybox-static",
    "zstd": "zstd",
    "lz4": "lz4",
    "unshare": "util-linux",
    "chroot": "coreutils",
    "cloud-localds": "cloud-image-utils",
    "ssh-keygen": "openssh-client",
}

# Daemons started from cron or sudo often lack the sbin directories in PATH.
_EXTRA_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_NO_SPACE = "No space left on device"


def find_tool(name: str) -> str:
    """The absolute path of program ``name``, or an ImageError saying how to install it."""
    search = os.pathsep.join([os.environ.get("PATH", "/usr/bin:/bin"), *_EXTRA_PATH])
    found = shutil.which(name, path=search)
    if found is None:
        package = PACKAGE_OF.get(name, name)
        raise ImageError(
            f"{name} is not installed; {SETUP_HINT} (it installs the Debian package {package})."
        )
    return found


def run_tool(
    argv: Sequence[str | Path],
    *,
    what: str,
    workdir: Path,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program to completion; on failure raise one ImageError sentence.

    ``what`` names the step for the message ("converting the disk to qcow2");
    ``workdir`` is the directory whose file system fills up if space runs out,
    so that the message can name it.
    """
    program = find_tool(str(argv[0]))
    result = subprocess.run(
        [program, *map(str, argv[1:])],
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
        umask=0o022,
    )
    if result.returncode != 0:
        raise tool_error(what, result.stdout + result.stderr, workdir)
    return result


def tool_error(what: str, output: str, workdir: Path) -> ImageError:
    """The sentence for a failed step, from the last lines a program printed."""
    if _NO_SPACE in output:
        return no_space_error(workdir)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reason = lines[-1] if lines else "it printed nothing"
    return ImageError(f"{what.capitalize()} failed: {reason.rstrip('.')}.")


def no_space_error(workdir: Path) -> ImageError:
    return ImageError(
        f"The disk holding {_lasting(workdir)} is full; free some space there and try again."
    )


def _lasting(path: Path) -> Path:
    """The nearest directory that outlives a build: work directories are gone when one reads."""
    for candidate in (path, *path.parents):
        if not any(part.startswith(".staging-") for part in candidate.parts):
            return candidate
    return path


def is_no_space(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


def require_space(directory: Path, needed: int) -> None:
    """Fail before minutes of work when the disk of ``directory`` cannot hold ``needed`` bytes."""
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise ImageError(
            f"The disk holding {_lasting(directory)} has {format_size(free)} free and this needs "
            f"about {format_size(needed)}; free some space there and try again."
        )
