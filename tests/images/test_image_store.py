"""The image store: importing disks, names and ids, removal, concurrency, clean failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bungalow.errors import ConflictError, ImageError, NotFoundError, UserError
from bungalow.images import ImageStore

MakeDisk = Callable[..., Path]


def _leftovers(store: ImageStore) -> list[str]:
    return sorted(p.name for p in store.root.glob(".staging-*"))


def test_an_empty_store_lists_nothing_and_says_how_to_build(store: ImageStore) -> None:
    assert store.list() == []
    assert not store.has("debian-12")
    with pytest.raises(NotFoundError, match="bungalow image build debian-12"):
        store.get("debian-12")


def test_import_qcow2_copies_it_into_a_read_only_base(
    store: ImageStore, make_disk: MakeDisk
) -> None:
    source = make_disk()
    stages: list[tuple[str, float]] = []
    image = store.import_disk(source, "mine", progress=lambda s, f: stages.append((s, f)))
    assert image.kind == "disk" and image.profile == "pc"
    assert image.name == "mine" and image.kernel is None and image.modules is None
    assert image.virtual_size == 16 << 20
    assert image.disk == store.root / image.id / "disk.qcow2"
    assert not os.access(image.disk, os.W_OK) or os.geteuid() == 0
    assert image.disk.stat().st_mode & 0o222 == 0
    assert str(source) in image.source
    assert stages[-1] == ("done", 1.0)
    assert [f for _, f in stages] == sorted(f for _, f in stages)
    # The copy holds the same bytes as the source.
    compare = subprocess.run(["qemu-img", "compare", str(source), str(image.disk)], check=False)
    assert compare.returncode == 0
    source.unlink()
    assert store.get("mine").disk.exists()
    assert _leftovers(store) == []


def test_import_raw_from_a_path_qemu_would_misread(store: ImageStore, make_disk: MakeDisk) -> None:
    source = make_disk("odd, name=with spaces.img", fmt="raw", size="8M")
    image = store.import_disk(source, "raw-disk")
    assert image.virtual_size == 8 << 20
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(image.disk)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"format": "qcow2"' in info


def test_get_by_name_and_unique_id_prefix(store: ImageStore, make_disk: MakeDisk) -> None:
    image = store.import_disk(make_disk(), "one")
    assert store.get("one") == image
    assert store.get(image.id[:8]).id == image.id
    assert store.get(image.id).name == "one"
    assert [i.name for i in store.list()] == ["one"]
    with pytest.raises(NotFoundError, match="the images are one"):
        store.get("two")
    with pytest.raises(NotFoundError):
        store.get("../one")


def test_an_ambiguous_prefix_asks_for_more(store: ImageStore, make_disk: MakeDisk) -> None:
    image = store.import_disk(make_disk(), "a")
    twin = store.root / (image.id[:6] + "0" * 58)
    shutil.copytree(image.directory, twin)
    with pytest.raises(UserError, match="matches 2 images; give more of the id"):
        store.get(image.id[:6])
    assert store.get(image.id[:7] if twin.name[6] != image.id[6] else image.id).id == image.id
    assert [i.name for i in store.list()] == ["a", None]


def test_a_taken_name_is_a_conflict(store: ImageStore, make_disk: MakeDisk) -> None:
    store.import_disk(make_disk(), "taken")
    with pytest.raises(ConflictError, match="exists already"):
        store.import_disk(make_disk("other.qcow2", size="4M"), "taken")
    assert _leftovers(store) == []


def test_the_same_content_again_under_its_name_is_the_same_image(
    store: ImageStore, make_disk: MakeDisk
) -> None:
    disk = make_disk()
    first = store.import_disk(disk, "first", firmware="uefi")
    again = store.import_disk(disk, "first", firmware="uefi")
    assert again.id == first.id and again.firmware == "uefi"
    assert [i.name for i in store.list()] == ["first"]
    assert _leftovers(store) == []


def test_the_same_content_under_another_name_is_refused_naming_the_image(
    store: ImageStore, make_disk: MakeDisk
) -> None:
    disk = make_disk()
    first = store.import_disk(disk, "first")
    with pytest.raises(ConflictError, match=r"already the image 'first' .*image rm first"):
        store.import_disk(make_disk("copy.vmdk", fmt="vmdk"), "second")
    assert [i.name for i in store.list()] == ["first"]
    store.remove("first")
    assert not (store.root / first.id).exists() and _leftovers(store) == []


@pytest.mark.parametrize("settings", [{"firmware": "uefi"}, {"vars": b"\1" * 4096}])
def test_the_same_content_with_other_boot_settings_is_refused(
    store: ImageStore, make_disk: MakeDisk, tmp_path: Path, settings: dict[str, object]
) -> None:
    disk = make_disk()
    store.import_disk(disk, "first", firmware="uefi-secure" if "vars" in settings else "bios")
    vars_file = None
    if "vars" in settings:
        vars_file = tmp_path / "VARS.fd"
        vars_file.write_bytes(settings["vars"])  # type: ignore[arg-type]
    firmware = str(settings.get("firmware", "uefi-secure"))
    with pytest.raises(ConflictError, match=r"already the image 'first' .*booted with"):
        store.import_disk(disk, "first", firmware=firmware, vars_file=vars_file)
    kept = store.get("first")
    assert kept.firmware == ("uefi-secure" if vars_file else "bios") and kept.vars_file is None


def test_removing_a_name_never_takes_another_names_image(
    store: ImageStore, make_disk: MakeDisk
) -> None:
    """Stores from before imports refused it may hold one content under two names."""
    first = store.import_disk(make_disk(), "first")
    (store.root / "names" / "second").symlink_to(f"../{first.id}")
    with pytest.raises(UserError, match="has the names first, second; remove them by name"):
        store.remove(first.id[:8])
    store.remove("first")  # only drops the name: "second" still uses the content
    assert store.get("second").disk.exists()
    store.remove("second")
    assert store.list() == []
    assert not (store.root / first.id).exists()


def test_remove_by_id_prefix(store: ImageStore, make_disk: MakeDisk) -> None:
    image = store.import_disk(make_disk(), "gone")
    removed = store.remove(image.id[:6])
    assert removed.id == image.id
    assert not store.has("gone") and store.list() == []


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("missing", NotFoundError, "no file"),
        ("directory", UserError, "not a regular file"),
        ("empty", UserError, "is empty"),
        ("passwd", UserError, "does not look like a disk"),  # text, qemu-img's "raw"
        ("sectors-of-text", UserError, "does not look like a disk"),  # whole sectors, still text
    ],
)
def test_import_refuses_what_is_not_a_disk(
    store: ImageStore, tmp_path: Path, kind: str, error: type[Exception], message: str
) -> None:
    path = tmp_path / kind
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "passwd":
        path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    elif kind == "sectors-of-text":
        path.write_text(("# a line of a text file\n" * 100)[:2048])
    with pytest.raises(error, match=message):
        store.import_disk(path, "bad")
    assert store.list() == []


def test_import_refuses_a_disk_that_reads_another_file(
    store: ImageStore, make_disk: MakeDisk, tmp_path: Path
) -> None:
    base = make_disk("base.qcow2")
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)],
        check=True,
    )
    with pytest.raises(UserError, match="depends on another file"):
        store.import_disk(overlay, "layered")


@pytest.mark.parametrize("fmt", ["vmdk", "vdi", "vhdx"])
def test_import_converts_other_hypervisors_disks(
    store: ImageStore, make_disk: MakeDisk, fmt: str
) -> None:
    source = make_disk(f"old.{fmt}", fmt=fmt, size="8M")
    image = store.import_disk(source, f"old-{fmt}", firmware="uefi")
    assert image.virtual_size == 8 << 20 and image.firmware == "uefi" and image.vars_file is None
    manifest = json.loads((image.directory / "manifest.json").read_text())
    assert manifest["source_format"] == fmt
    compare = subprocess.run(["qemu-img", "compare", str(source), str(image.disk)], check=False)
    assert compare.returncode == 0


def test_the_format_is_qemu_imgs_never_the_names(store: ImageStore, make_disk: MakeDisk) -> None:
    image = store.import_disk(make_disk("really-qcow2.vmdk", fmt="qcow2", size="4M"), "named")
    manifest = json.loads((image.directory / "manifest.json").read_text())
    assert manifest["source_format"] == "qcow2"


def test_a_vmdk_that_names_other_files_is_refused(store: ImageStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.raw"
    secret.write_bytes(b"\x5a" * (1 << 20))
    descriptor = tmp_path / "sneaky.vmdk"
    descriptor.write_text(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        'createType="monolithicFlat"\n\n'
        f'RW 2048 FLAT "{secret}" 0\n\n'
        'ddb.virtualHWVersion = "4"\nddb.geometry.cylinders = "2"\n'
        'ddb.geometry.heads = "16"\nddb.geometry.sectors = "63"\nddb.adapterType = "ide"\n'
    )
    with pytest.raises(UserError, match="depends on another file"):
        store.import_disk(descriptor, "sneaky")
    assert store.list() == [] and _leftovers(store) == []


def test_import_refuses_other_formats(store: ImageStore, make_disk: MakeDisk) -> None:
    with pytest.raises(UserError, match="is a qed image; bungalow imports raw, qcow2, vmdk"):
        store.import_disk(make_disk("x.qed", fmt="qed", size="4M"), "vm")


def test_bad_names_are_refused_before_any_work(store: ImageStore, make_disk: MakeDisk) -> None:
    with pytest.raises(UserError, match="not valid"):
        store.import_disk(make_disk(), "Bad/Name")
    assert not store.root.exists() or store.list() == []


def test_concurrent_imports_of_one_name_give_one_image(
    store: ImageStore, make_disk: MakeDisk
) -> None:
    disks = [make_disk(f"d{i}.qcow2", size=f"{4 + i}M") for i in range(3)]
    outcomes: list[str] = []

    def attempt(disk: Path) -> None:
        try:
            store.import_disk(disk, "race")
            outcomes.append("imported")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(disk,)) for disk in disks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "conflict", "imported"]
    assert len(store.list()) == 1
    assert _leftovers(store) == []


def test_work_left_by_a_dead_process_is_swept(store: ImageStore, make_disk: MakeDisk) -> None:
    store.root.mkdir(parents=True)
    stale = store.root / ".staging-dead"
    (stale / "rootfs").mkdir(parents=True)
    (stale / ".lock").touch()  # nobody holds the lock any more
    store.import_disk(make_disk(), "fresh")
    assert not stale.exists()


def test_a_damaged_manifest_is_reported(store: ImageStore, make_disk: MakeDisk) -> None:
    image = store.import_disk(make_disk(), "damaged")
    (image.directory / "manifest.json").write_text("{not json")
    with pytest.raises(ImageError, match="is damaged"):
        store.get("damaged")


def test_the_disk_filling_up_is_one_sentence(store: ImageStore, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        source = tmp_path / "big.raw"
        with source.open("wb") as file:
            file.write(os.urandom(6 << 20))
        with pytest.raises(ImageError, match="free some space"):
            ImageStore(small / "images").import_disk(source, "big")
        assert [p.name for p in (small / "images").iterdir() if p.name.startswith(".staging")] == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
