import pytest

from bungalow.errors import UserError
from bungalow.units import (
    format_size,
    format_span,
    parse_duration,
    parse_moment,
    parse_positive_duration,
    parse_size,
)

H = 3600.0
T0 = 1_700_000_000.0


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


@pytest.mark.parametrize("value", ["5300w", 1.9e295, float("inf"), "99999999999999999999d"])
def test_a_duration_is_at_most_100_years(value: str | float) -> None:
    assert parse_duration("5200w") == 5200 * 7 * 24 * H  # just under 100 years
    with pytest.raises(UserError, match="is longer than 100 years; give a shorter one"):
        parse_duration(value, what="lease")


@pytest.mark.parametrize("value", [True, float("nan")])
def test_a_duration_is_a_number_not_a_boolean_or_nan(value: float) -> None:
    with pytest.raises(UserError, match="is not a duration"):
        parse_duration(value)


def test_moments_are_dates_or_durations_ago() -> None:
    assert parse_moment("1w", T0) == T0 - 7 * 24 * H
    assert parse_moment("2h", T0) == T0 - 2 * H
    assert parse_moment("7d", T0) == T0 - 7 * 24 * H
    assert parse_moment("now", T0) == T0
    assert parse_moment("2026-11-01T00:00:00+00:00", T0) == 1793491200.0
    with pytest.raises(UserError, match="neither a date nor a duration"):
        parse_moment("last tuesday", T0)
    with pytest.raises(UserError, match="--until"):
        parse_moment("12", T0, what="--until")  # a bare number: seconds? a year? refused


def test_spans_use_their_largest_whole_unit() -> None:
    assert [format_span(s) for s in (40, 720, 5 * H, 3 * 24 * H, -7200)] == [
        "40s", "12m", "5h", "3d", "-2h",
    ]  # fmt: skip


def test_a_positive_duration_is_one_parser_for_leases_timeouts_and_intervals() -> None:
    assert parse_positive_duration("1w", what="lease") == 604800.0
    assert parse_positive_duration(90, what="lease") == 90.0
    for bad, says in [
        ("0s", "The lease must be positive"),
        ("soon", "The lease 'soon' is not a duration"),
        ("6000w", "The lease '6000w' is longer than 100 years"),
        (True, "The lease True is not a duration"),
    ]:
        with pytest.raises(UserError, match=says):
            parse_positive_duration(bad, what="lease")
