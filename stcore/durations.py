"""Durations and points in time as people type them: ``7d``, ``12h``, ``1y6mo``, ``2026-11-24``.

One parser, so a unit means the same thing everywhere (``--since``, ``--keep-within``,
``[retention] keep_within``, the seed facade's dates). ``m`` alone is refused: restic reads it
as months in ``--keep-within`` while most people mean minutes, and a retention policy that keeps
30 minutes instead of 30 months loses data. The message says what to write instead.
"""

from __future__ import annotations

import datetime as dt
import re

from stcore.errors import ConfigError

#: seconds per unit; a month is 30 days and a year 365, as restic counts them
UNITS = {
    "s": 1,
    "min": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,
    "y": 365 * 86400,
}
_PART = re.compile(r"(\d+)([a-z]+)")
_WHOLE = re.compile(r"(?:\d+[a-z]+)+")
EXAMPLES = "7d, 12h, 30min, 2w, 6mo, 1y6mo or 2y5mo7d3h"


def shown(text: str, limit: int = 60) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters: a hostile value must not
    turn a one-line error into a page."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def parse_duration(text: str) -> dt.timedelta:
    """A duration such as ``7d``, ``30min``, ``1y6mo``: whole numbers with units, largest first.

    Units: ``s``, ``min``, ``h``, ``d``, ``w``, ``mo`` (30 days), ``y`` (365 days). ``m`` is
    ambiguous and refused, with a message naming ``min`` and ``mo``.
    """
    compact = text.strip().lower().replace(" ", "")
    if not compact or _WHOLE.fullmatch(compact) is None:
        raise ConfigError(f"{shown(text)} is not a duration like {EXAMPLES}")
    seconds = 0
    for amount, unit in _PART.findall(compact):
        if unit == "m":
            raise ConfigError(
                f"{shown(text)} is ambiguous: write {amount}min for minutes or {amount}mo "
                "for months"
            )
        if unit not in UNITS:
            raise ConfigError(
                f"{shown(text)}: unknown unit {unit!r} (use s, min, h, d, w, mo or y, as in "
                f"{EXAMPLES})"
            )
        if len(amount) > 12:  # more than a million years in any unit; int() of it may fail
            raise ConfigError(f"{shown(text)} is longer than any duration stcore can use")
        seconds += int(amount) * UNITS[unit]
    try:
        return dt.timedelta(seconds=seconds)
    except OverflowError:
        raise ConfigError(f"{shown(text)} is longer than any duration stcore can use") from None


def parse_time(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """A point in time: an ISO date or date-time (UTC unless it names a zone), or a duration
    ago (``7d`` is seven days before ``now``)."""
    value = text.strip()
    if value[:1].isdigit() and _WHOLE.fullmatch(value.lower().replace(" ", "")):
        try:
            return (now or dt.datetime.now(dt.UTC)) - parse_duration(value)
        except OverflowError:
            raise ConfigError(f"{shown(text)} ago is before the year 1") from None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{shown(text)} is not a date or a duration (use 2026-11-24, 2026-11-24T13:00, or a "
            f"duration ago such as {EXAMPLES})"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def as_time(value: object, what: str = "a time", *, now: dt.datetime | None = None) -> dt.datetime:
    """``value`` as an aware point in time: a datetime (naive means UTC), a date (its midnight,
    UTC), or text for :func:`parse_time` (``2026-11-24``, ``7d`` ago). Anything else is refused
    naming ``what``, never compared as it is."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        return parse_time(value, now=now)
    raise ConfigError(
        f"{what} must be a datetime, a date or text such as 2026-11-24 or 7d, "
        f"not {type(value).__name__}"
    )
