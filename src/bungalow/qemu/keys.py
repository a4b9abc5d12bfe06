"""Key names and keyboard layouts: what ``send-keys`` and ``type`` turn into QMP ``send-key``.

QEMU presses keys by *qcode* (``QKeyCode`` in QEMU's qapi/ui.json, the physical key
named after its US legend: ``q``, ``bracket_left``, ``ret``), not by character. A
combination is a list of qcodes pressed in order and released together
(``ctrl-alt-delete``). Typing text means knowing which physical key, with which
modifiers, makes each character under the layout the *guest* uses: :data:`LAYOUTS`
holds those tables (``us``, and ``de`` without its dead keys). A character a layout
cannot type in one press is refused with a sentence naming it; nothing is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from bungalow.errors import UserError

_QKEYCODES = """
shift shift_r alt alt_r ctrl ctrl_r menu esc 1 2 3 4 5 6 7 8 9 0 minus equal backspace
tab q w e r t y u i o p bracket_left bracket_right ret a s d f g h j k l semicolon
apostrophe grave_accent backslash z x c v b n m comma dot slash asterisk spc caps_lock
f1 f2 f3 f4 f5 f6 f7 f8 f9 f10 num_lock scroll_lock kp_divide kp_multiply kp_subtract
kp_add kp_enter kp_decimal sysrq kp_0 kp_1 kp_2 kp_3 kp_4 kp_5 kp_6 kp_7 kp_8 kp_9 less
f11 f12 print home pgup pgdn end left up down right insert delete stop again props undo
front copy open paste find cut lf help meta_l meta_r compose pause ro hiragana henkan yen
muhenkan katakanahiragana kp_comma kp_equals power sleep wake audionext audioprev
audiostop audioplay audiomute volumeup volumedown mediaselect mail calculator computer
ac_home ac_back ac_forward ac_refresh ac_bookmarks lang1 lang2"""
#: Every QKeyCode QEMU 7.2 takes (query-qmp-schema, enum QKeyCode), but ``unmapped``.
QCODES: frozenset[str] = frozenset(_QKEYCODES.split())
#: Names people type for keys whose qcode is spelled otherwise (libvirt's and xdotool's).
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "enter": "ret",
        "return": "ret",
        "space": "spc",
        "del": "delete",
        "escape": "esc",
        "control": "ctrl",
        "altgr": "alt_r",
        "super": "meta_l",
        "win": "meta_l",
        "pageup": "pgup",
        "pagedown": "pgdn",
        "ins": "insert",
        "bksp": "backspace",
        "printscreen": "print",
    }
)
#: How long each combination is held down, and the gap after it, in milliseconds:
#: a TCG guest under load polls its keyboard late, and a press held too briefly or
#: followed at once by the next reaches it out of order or not at all (measured:
#: docs/architecture.md, "A screen").
HOLD_MS = 30
GAP_MS = 20

Combo = tuple[str, ...]


def parse_combo(text: str) -> Combo:
    """``ctrl-alt-delete`` -> ``("ctrl", "alt", "delete")``; ``-`` alone is the minus key.

    Raises UserError naming the key that is not a qcode or an alias of one.
    """
    words = ["minus"] if text == "-" else text.lower().split("-")
    keys: list[str] = []
    for word in words:
        key = ALIASES.get(word, word)
        if key not in QCODES:
            raise UserError(
                f"The key {word!r} in {text!r} is not a key QEMU knows; use names such as "
                "ret, esc, f2, ctrl, alt, delete, a or 1, joined with - (ctrl-alt-delete)."
            )
        keys.append(key)
    return tuple(keys)


def _us() -> dict[str, Combo]:
    table: dict[str, Combo] = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        table[letter] = (letter,)
        table[letter.upper()] = ("shift", letter)
    plain = dict(zip("1234567890", "1234567890", strict=True))
    plain |= {"-": "minus", "=": "equal", "[": "bracket_left", "]": "bracket_right"}
    plain |= {";": "semicolon", "'": "apostrophe", "`": "grave_accent", "\\": "backslash"}
    plain |= {",": "comma", ".": "dot", "/": "slash", " ": "spc", "\n": "ret", "\t": "tab"}
    shifted = dict(zip("!@#$%^&*()", "1234567890", strict=True))
    shifted |= {"_": "minus", "+": "equal", "{": "bracket_left", "}": "bracket_right"}
    shifted |= {":": "semicolon", '"': "apostrophe", "~": "grave_accent", "|": "backslash"}
    shifted |= {"<": "comma", ">": "dot", "?": "slash"}
    table |= {char: (key,) for char, key in plain.items()}
    table |= {char: ("shift", key) for char, key in shifted.items()}
    return table


def _de() -> dict[str, Combo]:
    """German (T1, QWERTZ) as X11's ``de`` and the console's ``de-latin1-nodeadkeys`` have it;
    ^ ` and the acute accent are dead keys on plain ``de`` and are left out."""
    table: dict[str, Combo] = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        key = {"y": "z", "z": "y"}.get(letter, letter)
        table[letter] = (key,)
        table[letter.upper()] = ("shift", key)
    plain = dict(zip("1234567890", "1234567890", strict=True))
    plain |= {"ß": "minus", "ü": "bracket_left", "+": "bracket_right", "ö": "semicolon"}
    plain |= {"ä": "apostrophe", "#": "backslash", "<": "less", ",": "comma", ".": "dot"}
    plain |= {"-": "slash", " ": "spc", "\n": "ret", "\t": "tab"}
    shifted = dict(zip('!"§$%&/()=', "1234567890", strict=True))
    shifted |= {"?": "minus", "Ü": "bracket_left", "*": "bracket_right", "Ö": "semicolon"}
    shifted |= {"Ä": "apostrophe", "'": "backslash", ">": "less", ";": "comma", ":": "dot"}
    shifted |= {"_": "slash", "°": "grave_accent"}
    altgr = {"²": "2", "³": "3", "{": "7", "[": "8", "]": "9", "}": "0", "\\": "minus"}
    altgr |= {"@": "q", "€": "e", "~": "bracket_right", "|": "less", "µ": "m"}
    table |= {char: (key,) for char, key in plain.items()}
    table |= {char: ("shift", key) for char, key in shifted.items()}
    table |= {char: ("alt_r", key) for char, key in altgr.items()}
    return table


#: Each layout's characters and the keys that type them.
LAYOUTS: Mapping[str, Mapping[str, Combo]] = MappingProxyType(
    {"us": MappingProxyType(_us()), "de": MappingProxyType(_de())}
)


def text_combos(text: str, layout: str) -> list[Combo]:
    """The key combinations that type ``text`` on ``layout``, one per character.

    Raises UserError for a layout not in :data:`LAYOUTS`, or naming the first
    character the layout cannot type (before anything is sent).
    """
    table = LAYOUTS.get(layout)
    if table is None:
        raise UserError(
            f"The keyboard layout {layout!r} is not known; use one of {', '.join(LAYOUTS)}."
        )
    combos: list[Combo] = []
    for position, char in enumerate(text):
        combo = table.get(char)
        if combo is None:
            raise UserError(
                f"The character {char!r} (position {position + 1}) cannot be typed on the "
                f"{layout} layout in one key press; leave it out or send its keys with send-keys."
            )
        combos.append(combo)
    return combos


def combos_of(keys: Sequence[str]) -> list[Combo]:
    """Each ``send-keys`` argument as a combination (UserError for an unknown key)."""
    if not keys:
        raise UserError("Name at least one key to send, such as ret or ctrl-alt-delete.")
    return [parse_combo(text) for text in keys]
