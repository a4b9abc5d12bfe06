"""Which kernel modules the initramfs loads, in which order, read from their ELF .modinfo."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from bungalow.errors import ImageError
from bungalow.images.modules import (
    BOOT_MODULES,
    LOAD_ORDER_FILE,
    depends,
    install_boot_modules,
    load_order,
    modinfo,
    module_name,
    read_load_order,
)

from .conftest import MakeModule, elf_module


def _tree(root: Path, modules: dict[str, bytes], builtin: tuple[str, ...] = ()) -> Path:
    for relative, data in modules.items():
        path = root / "kernel" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "modules.builtin").write_text("".join(f"kernel/{b}.ko\n" for b in builtin))
    return root


def test_module_names_follow_the_kernel_spelling() -> None:
    assert module_name(Path("drivers/char/hw_random/virtio-rng.ko")) == "virtio_rng"
    assert module_name(Path("virtio_blk.ko.xz")) == "virtio_blk"
    assert module_name(Path("x.ko.zst")) == "x"


def test_modinfo_reads_the_section(make_module: MakeModule) -> None:
    elf = make_module(depends=("virtio", "virtio-ring"), name="virtio_blk")
    assert modinfo(elf)["name"] == ["virtio_blk"]
    assert depends(elf) == ["virtio", "virtio_ring"]
    assert depends(make_module()) == []


def test_modinfo_reads_a_32_bit_module() -> None:
    """i386 kernels' modules are ELF32: other offsets, 4-byte addresses."""
    elf = elf_module(depends=("virtio", "virtio_ring"), name="virtio_blk", bits=32)
    assert elf[4] == 1  # ELFCLASS32
    assert modinfo(elf)["name"] == ["virtio_blk"]
    assert depends(elf) == ["virtio", "virtio_ring"]


def test_modinfo_refuses_what_is_not_a_module() -> None:
    with pytest.raises(ImageError, match="not a little-endian ELF"):
        modinfo(b"#!/bin/sh\n" + b"\0" * 64)


def test_dependencies_load_first_and_builtins_are_skipped(
    tmp_path: Path, make_module: MakeModule
) -> None:
    tree = _tree(
        tmp_path,
        {
            "a/top.ko": make_module(depends=("middle", "builtin_one")),
            "b/middle.ko.xz": lzma.compress(make_module(depends=("bottom",))),
            "c/bottom.ko": make_module(),
            "c/unrelated.ko": make_module(),
        },
        builtin=("x/builtin_one",),
    )
    order = [name for name, _ in load_order(tree, ["top", "bottom"])]
    assert order == ["bottom", "middle", "top"]


def test_a_missing_module_is_a_clear_error(tmp_path: Path, make_module: MakeModule) -> None:
    tree = _tree(tmp_path, {"top.ko": make_module(depends=("gone",))})
    with pytest.raises(ImageError, match="no module 'gone'"):
        load_order(tree, ["top"])


def test_a_dependency_cycle_is_an_error(tmp_path: Path, make_module: MakeModule) -> None:
    tree = _tree(
        tmp_path, {"a.ko": make_module(depends=("b",)), "b.ko": make_module(depends=("a",))}
    )
    with pytest.raises(ImageError, match="depend on each other"):
        load_order(tree, ["a"])


def test_boot_modules_are_installed_decompressed_with_their_order(
    tmp_path: Path, make_module: MakeModule
) -> None:
    base = make_module()
    tree = _tree(
        tmp_path / "tree",
        {"base.ko.xz": lzma.compress(base), "top.ko": make_module(depends=("base",))},
    )
    destination = tmp_path / "boot"
    assert install_boot_modules(tree, destination, wanted=["top"]) == ["base", "top"]
    assert (destination / "base.ko").read_bytes() == base
    assert [name for name, _ in read_load_order(destination)] == ["base", "top"]


def test_an_image_without_boot_modules_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="boot modules"):
        list(read_load_order(tmp_path))


def test_real_cloud_kernel_boot_modules(kernel: Path, tmp_path: Path) -> None:
    (tree,) = (kernel.parents[1] / "lib" / "modules").iterdir()
    names = install_boot_modules(tree, tmp_path)
    assert set(BOOT_MODULES) <= set(names)
    # Each module comes after everything it depends on.
    for position, (name, path) in enumerate(read_load_order(tmp_path)):
        assert path.read_bytes()[:4] == b"\x7fELF"
        assert set(depends(path.read_bytes())) <= set(names[:position]), name
    assert (tmp_path / LOAD_ORDER_FILE).read_text().split() == names
