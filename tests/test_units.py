import pytest

from bungalow.errors import UserError
from bungalow.units import format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512M", 512 << 20), ("1G", 1 << 30), ("1.5G", 3 << 29), ("8GiB", 8 << 30), ("4096", 4096)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "1X", "-1G", "1 G B"])
def test_parse_size_refuses_nonsense(text: str) -> None:
    with pytest.raises(UserError, match="not a size"):
        parse_size(text, what="memory size")


def test_format_size_round_trips() -> None:
    assert format_size(1 << 30) == "1G"
    assert format_size(3 << 29) == "1.5G"
    assert parse_size(format_size(512 << 20)) == 512 << 20


def test_parse_duration() -> None:
    assert parse_duration("10m") == 600
    assert parse_duration("2h") == 7200
    assert parse_duration("1.5") == 1.5
    with pytest.raises(UserError, match="not a duration"):
        parse_duration("soon")
