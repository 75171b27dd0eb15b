"""One duration parser: a unit means the same everywhere, and `m` alone is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stcore.durations import UNITS, parse_duration, parse_time
from stcore.errors import ConfigError

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(UNITS))), min_size=1))
def test_a_sum_of_parts_is_the_sum_of_their_seconds(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{amount}{unit}" for amount, unit in parts)
    expected = sum(amount * UNITS[unit] for amount, unit in parts)
    assert parse_duration(text) == dt.timedelta(seconds=expected)


@pytest.mark.parametrize(
    ("text", "days"),
    [("7d", 7), ("2w", 14), ("6mo", 180), ("1y", 365), ("1y6mo", 545), ("2y5mo7d", 887)],
)
def test_calendar_units_count_like_restic(text: str, days: int) -> None:
    assert parse_duration(text) == dt.timedelta(days=days)


def test_minutes_are_min_everywhere() -> None:
    assert parse_duration("30min") == dt.timedelta(minutes=30)
    assert parse_time("30min", now=NOW) == NOW - dt.timedelta(minutes=30)


@pytest.mark.parametrize("text", ["30m", "1y6m", "2y5m7d3h"])
def test_a_bare_m_is_ambiguous_and_the_message_says_what_to_write(text: str) -> None:
    with pytest.raises(ConfigError, match=r"ambiguous: write \d+min for minutes or \d+mo"):
        parse_duration(text)
    with pytest.raises(ConfigError, match="ambiguous"):
        parse_time(text, now=NOW)


@pytest.mark.parametrize("text", ["", "d", "7", "-3d", "7 days", "3.5h", "7d!", "1e3s"])
def test_garbage_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(text)
    assert "\n" not in str(caught.value)


def test_times_are_iso_dates_or_durations_ago() -> None:
    assert parse_time("2026-11-24", now=NOW) == dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    assert parse_time("2026-11-24T13:00+01:00", now=NOW).utcoffset() == dt.timedelta(hours=1)
    assert parse_time("7d", now=NOW) == NOW - dt.timedelta(days=7)
    with pytest.raises(ConfigError, match="not a date or a duration"):
        parse_time("yesterday", now=NOW)


@given(st.text(max_size=20))
def test_any_text_parses_or_raises_a_config_error(text: str) -> None:
    try:
        parse_duration(text)
    except ConfigError:
        pass


@pytest.mark.parametrize(
    "text", ["99999999999y", "1000000000000000000000d", "9" * 5000 + "s", "1" + "0" * 30 + "w"]
)
def test_absurd_durations_are_refused_in_one_short_line(text: str) -> None:
    with pytest.raises(ConfigError, match="longer than any duration") as refused:
        parse_duration(text)
    assert len(str(refused.value)) < 200
    with pytest.raises(ConfigError):
        parse_time(text, now=NOW)


def test_a_duration_reaching_before_the_year_1_is_refused() -> None:
    with pytest.raises(ConfigError, match="before the year 1"):
        parse_time("999999y", now=NOW)
