"""The initramfs a ``linux`` image boots with: busybox, the virtio modules, /init, the agent.

The archive is written here in Python rather than with the cpio program, so
that owners, modes and device nodes are exact without root and without
touching the host's file system, and the same inputs always give the same
bytes. It is left uncompressed: under TCG the guest kernel would inflate it
one emulated instruction at a time, while QEMU copies the plain bytes in.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import py_compile
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from bungalow.errors import ImageError
from bungalow.images._tools import SETUP_HINT, find_tool
from bungalow.images.guest_busybox import is_static, read_applets
from bungalow.images.modules import LOAD_ORDER_FILE, read_load_order

#: Bump when the archive's layout changes, so cached initramfs files are rebuilt.
FORMAT_VERSION = 1

#: The guest files every guest needs at the least; ``bungalow.guest.GUEST_FILES``
#: names the full set, all copied side by side into /run/bungalow/.
REQUIRED_GUEST_FILES = ("agent.py", "protocol.py")

INIT_SCRIPT = "initramfs_init.sh"

_DIRECTORIES = (
    "bin",
    "sbin",
    "usr",
    "usr/bin",
    "usr/sbin",
    "dev",
    "proc",
    "sys",
    "newroot",
    "lib",
    "lib/modules",
    "bungalow",
)
# (path, major, minor): the console must exist before devtmpfs is mounted.
_DEVICES = (("dev/console", 5, 1), ("dev/null", 1, 3))


@dataclass(frozen=True)
class Inputs:
    """Everything an initramfs is made of; its :attr:`key` names the cached file."""

    init_script: bytes
    busybox: Path
    guest_files: dict[str, bytes]
    modules: Path
    #: Precompiled guest modules (``__pycache__`` name -> bytes), when the host's
    #: Python is the guest's: compiling them costs a TCG guest seconds of CPU.
    bytecode: dict[str, bytes] = field(default_factory=dict)

    @property
    def key(self) -> str:
        digest = hashlib.sha256(f"bungalow-initramfs-{FORMAT_VERSION}\0".encode())
        digest.update(self.init_script)
        digest.update(hashlib.sha256(self.busybox.read_bytes()).digest())
        for name, data in sorted(self.guest_files.items()):
            digest.update(f"\0{name}\0{len(data)}\0".encode())
            digest.update(data)
        digest.update((self.modules / LOAD_ORDER_FILE).read_bytes())
        digest.update(f"\0bytecode\0{sorted(self.bytecode)}".encode())
        return digest.hexdigest()[:16]


def gather_inputs(
    modules: Path,
    guest_dir: Path | None = None,
    *,
    guest_python: str | None = None,
    busybox: Path | None = None,
) -> Inputs:
    """Find the init script, a static busybox and the guest agent files.

    ``busybox`` is the image's own (an image of another architecture keeps one,
    images/guest_busybox.py); None takes the host's busybox-static.

    ``guest_dir`` overrides where the guest files (every ``*.py`` in it, with
    agent.py the entry point) come from; by default they are the installed
    ``bungalow.guest`` package's ``GUEST_FILES``.
    """
    init_script = importlib.resources.files("bungalow.images").joinpath(INIT_SCRIPT)
    guest_files = _read_guest_files(guest_dir)
    return Inputs(
        init_script=init_script.read_bytes(),
        busybox=busybox or find_static_busybox(),
        guest_files=guest_files,
        modules=modules,
        bytecode=compile_guest_files(guest_files, guest_python),
    )


def compile_guest_files(files: dict[str, bytes], guest_python: str | None) -> dict[str, bytes]:
    """Bytecode for the guest's imports, made here when this Python is the guest's version.

    The pyc files use unchecked hashes: the guest loads them without looking at
    sources or times. The entry script (agent.py) is never loaded from a cache.
    """
    if guest_python != f"{sys.version_info.major}.{sys.version_info.minor}":
        return {}
    return dict(_compile(tuple(sorted(files.items()))))


@functools.lru_cache(maxsize=4)
def _compile(files: tuple[tuple[str, bytes], ...]) -> tuple[tuple[str, bytes], ...]:
    """Compile once per set of sources: every VM start asks for the initramfs key."""
    tag = sys.implementation.cache_tag
    compiled: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="bungalow-pyc-") as scratch:
        for name, source in files:
            if name == "agent.py" or not name.endswith(".py"):
                continue
            source_path = Path(scratch) / name
            source_path.write_bytes(source)
            target = Path(scratch) / f"{name}.pyc"
            py_compile.compile(
                str(source_path),
                cfile=str(target),
                dfile=f"/run/bungalow/{name}",
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
            compiled[f"{name.removesuffix('.py')}.{tag}.pyc"] = target.read_bytes()
    return tuple(sorted(compiled.items()))


def _read_guest_files(guest_dir: Path | None) -> dict[str, bytes]:
    """The guest files by name: every ``*.py`` of ``guest_dir``, or the installed agent's."""
    sources = sorted(guest_dir.glob("*.py")) if guest_dir is not None else _installed_guest_files()
    files = {source.name: source.read_bytes() for source in sources if source.is_file()}
    where = guest_dir or "the bungalow.guest package"
    for name in REQUIRED_GUEST_FILES:
        if name not in files:
            raise ImageError(
                f"The guest agent file {name} is missing from {where}; reinstall bungalow "
                "before booting a VM."
            )
    return files


def _installed_guest_files() -> list[Path]:
    """Every file the guest agent needs, as the guest package lists them."""
    from bungalow.guest import GUEST_FILES

    return [Path(path) for path in GUEST_FILES]


def find_static_busybox() -> Path:
    """The host's busybox, which must be static: the initramfs has no C library."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file():
            break
    else:
        path = Path(find_tool("busybox"))
    if not is_static(path):
        raise ImageError(
            f"{path} is linked dynamically and cannot run in an initramfs; install "
            f"busybox-static ({SETUP_HINT})."
        )
    return path


def busybox_applets(busybox: Path) -> list[str]:
    """Where each applet lives (``usr/bin/ip``...), as the binary itself reports it.

    A guest's busybox of another architecture has its list beside it, written when
    the image was built (running it here may need a binfmt_misc handler).
    """
    listed = read_applets(busybox)
    if listed is not None:
        return listed
    result = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ImageError(f"{busybox} --list-full failed; install busybox-static ({SETUP_HINT}).")
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def write_initramfs(inputs: Inputs, output: BinaryIO) -> None:
    """Write the whole newc archive for ``inputs`` to ``output``."""
    archive = NewcWriter(output)
    applets = busybox_applets(inputs.busybox)
    directories = {str(Path(applet).parent) for applet in applets} - {"."}
    for directory in sorted(directories.union(_DIRECTORIES)):
        archive.directory(directory)
    for device, major, minor in _DEVICES:
        archive.char_device(device, major, minor)
    archive.file("init", inputs.init_script, mode=0o755)
    archive.file("bin/busybox", inputs.busybox.read_bytes(), mode=0o755)
    for applet in applets:
        if applet not in ("bin/busybox", "bin/sh"):
            archive.symlink(applet, "/bin/busybox")
    archive.symlink("bin/sh", "busybox")
    archive.file(f"lib/modules/{LOAD_ORDER_FILE}", (inputs.modules / LOAD_ORDER_FILE).read_bytes())
    for module, module_file in read_load_order(inputs.modules):
        archive.file(f"lib/modules/{module}.ko", module_file.read_bytes())
    for name, data in sorted(inputs.guest_files.items()):
        archive.file(f"bungalow/{name}", data)
    if inputs.bytecode:
        archive.directory("bungalow/__pycache__")
        for name, data in sorted(inputs.bytecode.items()):
            archive.file(f"bungalow/__pycache__/{name}", data)
    archive.close()


def build_initramfs(inputs: Inputs, destination: Path) -> Path:
    """Write the archive next to ``destination`` and rename it there atomically."""
    handle, name = tempfile.mkstemp(prefix=".initrd-", suffix=".tmp", dir=destination.parent)
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as output:
            write_initramfs(inputs, output)
        temporary.chmod(0o444)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    return destination


class NewcWriter:
    """A writer of cpio archives in the "new ASCII" (newc) format the kernel unpacks."""

    _MAGIC = b"070701"

    def __init__(self, output: BinaryIO) -> None:
        self._output = output
        self._inode = 1
        self._written = 0

    def directory(self, path: str, mode: int = 0o755) -> None:
        self._entry(path, stat.S_IFDIR | mode, b"", nlink=2)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, path: str, major: int, minor: int) -> None:
        self._entry(path, stat.S_IFCHR | 0o600, b"", rdev=(major, minor))

    def close(self) -> None:
        """Write the trailer entry that ends every newc archive."""
        self._entry("TRAILER!!!", 0, b"", nlink=1, inode=0)

    def _entry(
        self,
        path: str,
        mode: int,
        data: bytes,
        *,
        nlink: int = 1,
        rdev: tuple[int, int] = (0, 0),
        inode: int | None = None,
    ) -> None:
        name = path.encode() + b"\0"
        if inode is None:
            inode, self._inode = self._inode, self._inode + 1
        # ino mode uid gid nlink mtime size devmajor devminor rdevmajor rdevminor namesize check
        fields = (inode, mode, 0, 0, nlink, 0, len(data), 0, 0, *rdev, len(name), 0)
        header = self._MAGIC + b"".join(b"%08x" % value for value in fields)
        self._write(header + name)
        self._pad()
        self._write(data)
        self._pad()

    def _write(self, data: bytes) -> None:
        self._output.write(data)
        self._written += len(data)

    def _pad(self) -> None:
        self._write(b"\0" * (-self._written % 4))
