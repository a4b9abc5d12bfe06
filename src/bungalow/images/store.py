"""The image store: immutable, content-addressed images on disk, and the names that point at them.

Layout under the store's root::

    <id>/                   one image; <id> is the sha256 of its disk.qcow2 (or medium.iso)
        manifest.json       what the image is (see :class:`Image`)
        disk.qcow2          the base disk, read-only; VMs use qcow2 overlays on it
        medium.iso          instead of a disk, an ISO 9660 medium (``iso`` images, images/iso.py)
        vmlinux             kernel, decompressed, PVH entry ("linux" images only;
                            vmlinuz when a kernel cannot be booted that way)
        vmlinuz             the kernel as Debian ships it, which OVMF boots
        modules/            decompressed boot modules and their load-order
        busybox             the guest's static busybox and its busybox.applets
                            (images of another architecture only)
        initrd-<key>.img    initramfs, built on demand, one per set of guest files
        efivars.fd          an imported disk's UEFI variable store (``import --vars``)
    names/<name>            symlink to ../<id>
    .locks/<name>.lock      held while an image of that name is being made
    .lock                   held while names or image directories change
    .staging-*/             work in progress; removed on failure, swept if left by a crash

Every change is a rename of a finished file or directory, so a reader never
sees half an image, and two processes may build or import at the same time.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from bungalow.arch import DEFAULT_ARCH, Arch, check_arch
from bungalow.errors import ConflictError, ImageError, NotFoundError, UserError
from bungalow.images import disk as disks
from bungalow.images._tools import Progress, is_no_space, no_space_error, require_space
from bungalow.images.guest_busybox import BUSYBOX
from bungalow.images.initramfs import build_initramfs, gather_inputs
from bungalow.images.kernel import EFI_KERNEL
from bungalow.images.recipes import Flavour
from bungalow.names import validate_name

ImageKind = Literal["linux", "disk", "iso"]

MANIFEST = "manifest.json"
#: An imported disk's UEFI variable store (``import --vars``).
VARS = "efivars.fd"
DISK = "disk.qcow2"
KERNEL = "vmlinuz"
MODULES = "modules"
MANIFEST_FORMAT = 1

_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_PREFIX_RE = re.compile(r"^[0-9a-f]{4,64}$")
_STALE_AFTER = 3600.0
_INITRDS_KEPT = 4


@dataclass(frozen=True)
class Image:
    """One image in the store, as the qemu layer and the daemon need to know it.

    ``kind`` decides how it boots: ``linux`` images boot their kernel and a
    bungalow initramfs directly (the micro profile); ``disk`` images were
    imported and boot through firmware from their own bootloader (the pc profile);
    ``iso`` images are CD-ROM media (``disk`` is then the ISO file), which an installer
    VM boots from before its own blank disk (daemon/vms/media.py).
    """

    id: str
    name: str | None
    kind: ImageKind
    disk: Path
    kernel: Path | None
    modules: Path | None
    size: int
    virtual_size: int
    created: datetime
    os_release: str
    kernel_version: str | None
    source: str
    #: The builder's RECIPE_VERSION for built images; None for imported disks.
    recipe_version: int | None = None
    #: The guest's python3 version ("3.11"), when the builder recorded it.
    python: str | None = None
    #: Whether the image runs cloud-init (/usr/bin/cloud-init, seen by the builder in the
    #: root file system); None for an imported disk, which bungalow does not look into.
    cloud_init: bool | None = None
    #: Whether the image has an SSH server (/usr/sbin/sshd), as cloud_init.
    sshd: bool | None = None
    #: ``server`` when the guest boots systemd, ``micro`` when the agent is its PID 1
    #: (images/recipes.py); imported disks count as ``micro``: they have no bungalow init.
    flavour: Flavour = "micro"
    #: The guest's architecture as QEMU names it (bungalow/arch.py); imported disks and
    #: images built before the field are x86_64.
    arch: Arch = DEFAULT_ARCH
    #: The firmware the disk boots with (``bios``, ``uefi``, ``uefi-secure``): a VM made
    #: from it gets that unless told otherwise. Built images boot under any.
    firmware: str = "bios"
    #: The UEFI variable store it came with (its boot entries), which each VM copies;
    #: None: a VM starts from the firmware's blank template.
    vars_file: Path | None = None
    #: The kernel with an EFI stub (``vmlinuz``) that OVMF boots; None for images built
    #: before bungalow kept it, and for imported disks.
    efi_kernel: Path | None = None

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def profile(self) -> str:
        return "micro" if self.kind == "linux" else "pc"

    @property
    def directory(self) -> Path:
        return self.disk.parent


class ImageStore:
    """The images under one directory (``DataDir.images``), shared by every VM of a host."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    # Reading

    def list(self) -> builtins.list[Image]:
        """Every image once per name, then the unnamed ones (superseded by a rebuild)."""
        names = self._names_by_id()
        images: builtins.list[Image] = []
        for image_id in self._ids():
            image_names: builtins.list[str | None] = [*names.get(image_id, [])]
            for name in image_names or [None]:
                images.append(self._load(image_id, name))
        return sorted(images, key=lambda image: (image.name is None, image.name or "", image.id))

    def get(self, ref: str) -> Image:
        """The image with this name, or whose id starts with ``ref`` (at least 4 characters)."""
        image_id = self._name_target(ref)
        if image_id is not None:
            return self._load(image_id, ref)
        if _ID_PREFIX_RE.match(ref):
            matches = [image_id for image_id in self._ids() if image_id.startswith(ref)]
            if len(matches) > 1:
                raise UserError(
                    f"The id prefix {ref!r} matches {len(matches)} images; give more of the id."
                )
            if matches:
                return self._load(matches[0], self._first_name(matches[0]))
        raise NotFoundError(self._not_found_message(ref))

    def has(self, name: str) -> bool:
        return self._name_target(name) is not None

    # Changing

    def remove(self, ref: str) -> Image:
        """Delete an image; the caller makes sure no VM still uses it.

        Removing by name when other names point at the same content (a store made
        before :meth:`check_same`) only drops that name; UserError when ``ref`` is an id
        that several names share.
        """
        image = self.get(ref)
        with self._store_lock():
            names = self._names_by_id().get(image.id, [])
            if ref in names and len(names) > 1:
                (self._names_dir / ref).unlink()
                return image
            if len(names) > 1:
                raise UserError(
                    f"The image {image.short_id} has the names {', '.join(names)}; remove "
                    "them by name, each name on its own."
                )
            for name in names:
                (self._names_dir / name).unlink(missing_ok=True)
            # Out of sight at once (one rename), deleted at leisure.
            doomed = Path(tempfile.mkdtemp(prefix=".removing-", dir=self.root))
            os.rename(image.directory, doomed / image.id)
        shutil.rmtree(doomed, ignore_errors=True)
        return image

    def import_disk(
        self,
        path: Path,
        name: str,
        *,
        progress: Progress | None = None,
        firmware: str = "bios",
        vars_file: Path | None = None,
    ) -> Image:
        """Copy a disk (raw, qcow2, vmdk, vdi, vhdx: images/disk.py) into the store as a
        ``disk`` image booted by ``firmware``, with ``vars_file`` (checked by the caller
        against that firmware) as its UEFI variable store.

        The file is converted to qcow2 with ``qemu-img convert``, so any source path
        works and the source can change or vanish afterwards without touching the image.
        """
        validate_name(name, what="image")
        source, source_format, virtual_size = disks.check_importable(Path(path))
        report = progress or _ignore_progress
        with self.build_lock(name), self.staging() as staging:
            require_space(staging, disks.allocated_size(source) + (64 << 20))
            staged = staging / "image"
            staged.mkdir()
            report("copying the disk", 0.0)
            disks.convert_to_qcow2(
                source,
                source_format,
                staged / DISK,
                progress=lambda done: report("copying the disk", done * 0.95),
            )
            if vars_file is not None:
                shutil.copyfile(vars_file, staged / VARS)
            report("hashing the disk", 0.95)
            image_id = disks.sha256(staged / DISK)
            if self.has(name) and self.get(name).id != image_id:
                raise ConflictError(
                    f"An image named {name!r} exists already; remove it or choose another name."
                )
            image = self.commit(
                staged,
                name,
                {
                    "kind": "disk",
                    "os_release": "",
                    "kernel_version": None,
                    "source": f"imported from {source}",
                    "source_format": source_format,
                    "source_virtual_size": virtual_size,
                    "firmware": firmware,
                },
                image_id=image_id,
            )
        report("done", 1.0)
        return image

    def initrd_for(self, image: Image, *, guest_dir: Path | None = None) -> Path:
        """The initramfs to boot ``image`` with, built once per image and set of guest files.

        ``guest_dir`` is where agent.py and protocol.py come from; by default
        the installed ``bungalow.guest`` package, so an upgraded agent gets a
        new initramfs on the next VM start.
        """
        if image.kind != "linux" or image.modules is None:
            raise ImageError(
                f"The image {image.name or image.short_id} is a disk image; it boots through "
                "firmware from its own bootloader, not from a bungalow initramfs."
            )
        own_busybox = image.directory / BUSYBOX
        inputs = gather_inputs(
            image.modules,
            guest_dir,
            guest_python=image.python,
            busybox=own_busybox if own_busybox.is_file() else None,
        )
        destination = image.directory / f"initrd-{inputs.key}.img"
        if destination.exists():
            os.utime(destination)  # recently used: kept by the pruning below
            return destination
        try:
            build_initramfs(inputs, destination)
        except OSError as error:
            if is_no_space(error):
                raise no_space_error(image.directory) from None
            raise
        _prune_initrds(image.directory)
        return destination

    # For builders (bungalow.images.build): stage, then commit.

    @contextmanager
    def build_lock(self, name: str) -> Iterator[None]:
        """Held while an image called ``name`` is made, so two builds of one name take turns."""
        validate_name(name, what="image")
        self._ensure_root()
        with _flocked(self.root / ".locks" / f"{name}.lock"):
            yield

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh work directory inside the store, removed afterwards whatever happens."""
        self._ensure_root()
        self._sweep_stale_staging()
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            with _flocked(staging / ".lock"):
                yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def commit(
        self,
        staged: Path,
        name: str,
        fields: dict[str, Any],
        *,
        file: str = DISK,
        image_id: str | None = None,
    ) -> Image:
        """Hash ``staged`` (a directory with disk.qcow2, or the ``file`` named; ``image_id``
        when the caller hashed it), move it into place and name it; ``fields`` may give the
        ``virtual_size`` (else qemu-img's). When that content is stored already, ConflictError
        unless it may take this name and settings (:meth:`check_same`)."""
        disk = staged / file
        image_id = image_id or disks.sha256(disk)
        manifest = {
            "format": MANIFEST_FORMAT,
            "id": image_id,
            "name": name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "virtual_size": fields.get("virtual_size") or int(disks.info(disk)["virtual-size"]),
            "file": file,
            **fields,
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        disk.chmod(0o444)
        with self._store_lock():
            final = self.root / image_id
            if final.exists():
                self.check_same(image_id, name, manifest.get("firmware"), staged / VARS)
            else:
                os.rename(staged, final)
            self._link_name(name, image_id)
        return self.get(name)

    def names_of(self, image_id: str) -> builtins.list[str]:
        """The names pointing at the image ``image_id`` (none for a superseded build)."""
        return self._names_by_id().get(image_id, [])

    def check_same(
        self,
        image_id: str,
        name: str,
        firmware: str | None = None,
        vars_file: Path | None = None,
    ) -> None:
        """Pass when the content ``image_id`` may be (re)named ``name``, booted by
        ``firmware`` (None: any) with the UEFI variable store ``vars_file`` (None or a path
        not there: none); else ConflictError naming the image that holds it.

        One content is one image with one name and one set of boot settings, so that
        removing a name never takes another's image and an import's --firmware is never
        dropped: importing the same content again is only idempotent under its own name.
        """
        if not (self.root / image_id / MANIFEST).is_file():
            return
        names = self.names_of(image_id)
        held = names[0] if names else None
        stored = self._load(image_id, held)
        shown = f"{held!r} ({stored.short_id})" if held else f"{stored.short_id} (unnamed)"
        remove = f"`bungalow image rm {held or stored.short_id}`"
        if held is not None and name not in names:
            raise ConflictError(
                f"This content is already the image {shown}; use that name, or remove it "
                f"first ({remove}) to import it as {name!r}."
            )
        new_vars = None if vars_file is None or not vars_file.is_file() else vars_file
        if firmware is not None and (
            firmware != stored.firmware or _digest(new_vars) != _digest(stored.vars_file)
        ):
            kept = "its own" if stored.vars_file else "no"
            raise ConflictError(
                f"This content is already the image {shown}, booted with {stored.firmware} "
                f"and {kept} UEFI variable store; remove it first ({remove}) to import it "
                "with other settings."
            )

    # Internals

    @property
    def _names_dir(self) -> Path:
        return self.root / "names"

    def _ids(self) -> builtins.list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if _ID_RE.match(entry.name) and (entry / MANIFEST).is_file()
        )

    def _name_target(self, name: str) -> str | None:
        try:
            validate_name(name, what="image")
        except UserError:
            return None
        try:
            image_id = os.path.basename(os.readlink(self._names_dir / name))
        except OSError:
            return None
        if _ID_RE.match(image_id) and (self.root / image_id / MANIFEST).is_file():
            return image_id
        return None

    def _names_by_id(self) -> dict[str, builtins.list[str]]:
        names: dict[str, builtins.list[str]] = {}
        if self._names_dir.is_dir():
            for entry in sorted(self._names_dir.iterdir()):
                image_id = self._name_target(entry.name)
                if image_id is not None:
                    names.setdefault(image_id, []).append(entry.name)
        return names

    def _first_name(self, image_id: str) -> str | None:
        names = self._names_by_id().get(image_id)
        return names[0] if names else None

    def _link_name(self, name: str, image_id: str) -> None:
        self._names_dir.mkdir(parents=True, exist_ok=True)
        temporary = self._names_dir / f".{name}.{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)
        os.symlink(f"../{image_id}", temporary)
        os.replace(temporary, self._names_dir / name)

    def _load(self, image_id: str, name: str | None) -> Image:
        directory = self.root / image_id
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
            linux = manifest["kind"] == "linux"
            return Image(
                id=image_id,
                name=name,
                kind=manifest["kind"],
                disk=directory / str(manifest.get("file", DISK)),
                kernel=directory / manifest.get("kernel", KERNEL) if linux else None,
                modules=directory / MODULES if linux else None,
                size=disks.allocated_size(directory),
                virtual_size=int(manifest["virtual_size"]),
                created=datetime.fromisoformat(manifest["created"]),
                os_release=manifest.get("os_release") or "",
                kernel_version=manifest.get("kernel_version"),
                source=manifest.get("source") or "",
                recipe_version=manifest.get("recipe_version"),
                python=manifest.get("python"),
                flavour="server" if manifest.get("flavour") == "server" else "micro",
                arch=check_arch(manifest.get("arch") or DEFAULT_ARCH),
                # Builders before these keys made only micro images, which have neither; a
                # server image built before them has both.
                cloud_init=bool(manifest.get("cloud_init", manifest.get("flavour") == "server"))
                if linux
                else None,
                sshd=bool(manifest.get("sshd", manifest.get("flavour") == "server"))
                if linux
                else None,
                firmware=str(manifest.get("firmware", "bios")),
                vars_file=directory / VARS if (directory / VARS).is_file() else None,
                efi_kernel=directory / EFI_KERNEL
                if linux and (directory / EFI_KERNEL).is_file()
                else None,
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ImageError(
                f"The image {image_id[:12]} in {self.root} is damaged ({error!r}); remove it."
            ) from None

    def _not_found_message(self, ref: str) -> str:
        names = sorted({name for names in self._names_by_id().values() for name in names})
        if not names:
            return (
                f"There is no image {ref!r}, and no image at all yet; "
                "run `bungalow image build debian-12` to build the default one."
            )
        return (
            f"There is no image {ref!r}; the images are {', '.join(names)} "
            "(run `bungalow image build debian-12` to build another)."
        )

    def _ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    @contextmanager
    def _store_lock(self) -> Iterator[None]:
        self._ensure_root()
        with _flocked(self.root / ".lock"):
            yield

    def _sweep_stale_staging(self) -> None:
        """Remove work directories whose process died (their lock is free)."""
        for staging in self.root.glob(".staging-*"):
            lock = staging / ".lock"
            if not lock.exists():
                if time.time() - staging.stat().st_mtime > _STALE_AFTER:
                    shutil.rmtree(staging, ignore_errors=True)
                continue
            with lock.open("a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
            shutil.rmtree(staging, ignore_errors=True)
        for doomed in self.root.glob(".removing-*"):
            shutil.rmtree(doomed, ignore_errors=True)


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    path.parent.mkdir(exist_ok=True, mode=0o700)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _prune_initrds(directory: Path) -> None:
    """Keep the few most recently used initramfs files of an image, delete older ones.

    Each new agent version makes a new one. QEMU reads its initramfs whole when
    it starts, so only a VM between initrd_for() and its QEMU's start could
    still need an old one, and it would need one of the newest.
    """
    used: list[tuple[float, Path]] = []
    for path in directory.glob("initrd-*.img"):
        try:  # another start (or daemon: image stores are shared) may prune it meanwhile
            used.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue
    for _, old in sorted(used)[:-_INITRDS_KEPT]:
        old.unlink(missing_ok=True)


def _digest(path: Path | None) -> str | None:
    return None if path is None else disks.sha256(path)


def _ignore_progress(stage: str, fraction: float) -> None:
    """The progress callback of callers who do not want progress."""
