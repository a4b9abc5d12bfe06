"""Key names and keyboard layouts: what send-keys and type press, and what they refuse."""

from __future__ import annotations

import re

import pytest

from bungalow.cli.screen import unescape
from bungalow.errors import UserError
from bungalow.qemu.keys import LAYOUTS, QCODES, combos_of, parse_combo, text_combos


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("ctrl-alt-delete", ("ctrl", "alt", "delete")),
        ("ret", ("ret",)),
        ("Enter", ("ret",)),
        ("f2", ("f2",)),
        ("ctrl-c", ("ctrl", "c")),
        ("altgr-q", ("alt_r", "q")),
        ("-", ("minus",)),
        ("shift-spc", ("shift", "spc")),
    ],
)
def test_combinations_are_qcodes(text: str, keys: tuple[str, ...]) -> None:
    assert parse_combo(text) == keys


@pytest.mark.parametrize("text", ["ctrl-foo", "ctrl--c", "", "unmapped"])
def test_an_unknown_key_is_named(text: str) -> None:
    with pytest.raises(UserError, match="is not a key QEMU knows"):
        parse_combo(text)


def test_send_keys_needs_a_key() -> None:
    with pytest.raises(UserError, match="at least one key"):
        combos_of([])


def test_us_types_shifted_and_plain_characters() -> None:
    assert text_combos("aZ1!\n", "us") == [
        ("a",),
        ("shift", "z"),
        ("1",),
        ("shift", "1"),
        ("ret",),
    ]
    assert text_combos('~|"', "us") == [
        ("shift", "grave_accent"),
        ("shift", "backslash"),
        ("shift", "apostrophe"),
    ]


def test_de_swaps_y_and_z_and_reaches_altgr_and_umlauts() -> None:
    assert text_combos("zy@äÖ-", "de") == [
        ("y",),
        ("z",),
        ("alt_r", "q"),
        ("apostrophe",),
        ("shift", "semicolon"),
        ("slash",),
    ]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_types_printable_ascii_but_its_dead_keys_with_real_qcodes(
    layout: str,
) -> None:
    table = LAYOUTS[layout]
    dead = {"de": set("^`")}.get(layout, set())
    printable = {chr(code) for code in range(32, 127)}
    assert printable - set(table) <= dead
    for combo in table.values():
        assert set(combo) <= QCODES
    # No two characters share a key combination (a typo in a table would).
    assert len(set(table.values())) == len(table)


def test_a_character_the_layout_cannot_type_is_named_before_anything_is_sent() -> None:
    with pytest.raises(UserError, match=re.escape("The character 'é' (position 3)")):
        text_combos("caé", "us")
    with pytest.raises(UserError, match=re.escape("The character '^' (position 1)")):
        text_combos("^", "de")


def test_an_unknown_layout_lists_the_known_ones() -> None:
    with pytest.raises(UserError, match="use one of us, de"):
        text_combos("hi", "dvorak")


def test_type_reads_backslash_escapes() -> None:
    assert unescape(r"root\n") == "root\n"
    assert unescape(r"a\tb\\n\q") == "a\tb\\n\\q"
