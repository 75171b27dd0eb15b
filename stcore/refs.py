"""Snapshot references as people type them: ``latest``, ``latest~2``, ``@2026-11-30``, ``@7d~1``,
an id or a prefix of one. This module parses them; the catalog resolves them.

The grammar::

    ref  = base [ "~" N ]      N: a whole number of snapshots further back in time (~0: base)
    base = "latest"            the newest snapshot (as of a moment, when one is given)
         | "@" WHEN            the newest snapshot taken at or before WHEN
         | ID | PREFIX         a full id, or a unique prefix of one or of its random part

``WHEN`` is what :func:`stcore.durations.parse_time` reads: ``2026-11-30``,
``2026-11-30T12:00``, ``2026-11-30T12:00:00Z``, ``2026-11-30T12:00:00+02:00`` (UTC unless a
zone is named), or a duration ago (``7d``, ``12h``, ``30min``). Snapshot ids are a UTC time
and a random hex part (``20261124T131102Z-3fa2c1d9``), so they never hold ``@`` or ``~`` and
``latest`` is no prefix of one: every reference reads one way. A reference that does not fit
raises :class:`~stcore.errors.SnapshotNotFoundError` with one line saying why.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

import attrs

from stcore.durations import parse_time, shown
from stcore.errors import ConfigError, SnapshotNotFoundError

RefKind = Literal["latest", "time", "id"]
_COUNT = re.compile(r"[0-9]+")
#: ``~N`` with more digits than this is refused outright (SQLite counts in 64 bits)
MAX_BACK_DIGITS = 12
EXAMPLES = "latest~1, @2026-11-30, @2026-11-30T12:00:00Z, @7d~1 or 3fa2c1d9~1"


@attrs.frozen(kw_only=True)
class SnapshotRef:
    """One parsed reference."""

    #: as it was written
    text: str
    kind: RefKind
    #: ``latest``, the id or prefix, or the ``@...`` part as written (``@2026-11-30``)
    base: str
    #: for ``@WHEN``: that moment, aware
    when: dt.datetime | None = None
    #: snapshots further back from the base (the N of ``~N``)
    back: int = 0


def _refused(text: str, why: str) -> SnapshotNotFoundError:
    return SnapshotNotFoundError(f"{shown(text)} is not a snapshot reference: {why}")


def parse_ref(text: str, *, now: dt.datetime | None = None) -> SnapshotRef:
    """``text`` as a :class:`SnapshotRef`; ``@7d`` is seven days before ``now`` (default: now)."""
    base, tilde, count = text.rpartition("~") if "~" in text else (text, "", "")
    back = 0
    if tilde:
        if _COUNT.fullmatch(count) is None:
            raise _refused(text, f"~ is followed by a number of snapshots back, as in {EXAMPLES}")
        if len(count) > MAX_BACK_DIGITS:
            raise SnapshotNotFoundError(
                f"{shown(text)} goes back more snapshots than any repository holds"
            )
        back = int(count)
        if not base or "~" in base:
            raise _refused(text, f"write one ~N after a snapshot, as in {EXAMPLES}")
    if not base:
        raise _refused(text, f"it is empty (use {EXAMPLES})")
    if base.startswith("@"):
        try:
            when = parse_time(base[1:], now=now)
        except ConfigError as exc:
            raise _refused(text, str(exc)) from None
        return SnapshotRef(text=text, kind="time", base=base, when=when, back=back)
    if "@" in base:
        raise _refused(text, f"a time is written first, after @, as in {EXAMPLES}")
    kind: RefKind = "latest" if base == "latest" else "id"
    return SnapshotRef(text=text, kind=kind, base=base, back=back)


def show_time(when: dt.datetime) -> str:
    """``when`` in UTC, to the second, as messages show it: ``2026-11-30T12:00:00Z``."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
