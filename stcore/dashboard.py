"""The status dashboard: the status document (``stcore.web.status_document``) rendered as one
HTML page, its charts inline SVG drawn here, on the server.

Its one job is the rendering; ``stcore.web`` serves the page at ``/`` behind the same Host
check, bearer token and redaction as the JSON it is made from. The page loads nothing: its
style and its small auto-refresh script are inline, allowed by their hashes in
:func:`content_security_policy` (no CDN, no network, no ``unsafe-inline``), and the script only
fetches the page again and swaps in its ``<main>``. Every string from the repository (source and
remote names, tags, hosts, errors) is HTML-escaped by Jinja2's autoescaping, after its control,
bidirectional and surrogate characters are made visible (``\\x1b``, ``\\u202e``) by
:func:`stcore.text.printable`, as on the terminal. The templates, style and script are files
beside this module, in ``stcore/dashboard_assets/``. Jinja2 comes with Flask (``stcore[web]``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import math
import time
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import Any

from stcore.text import printable

#: Seconds between two refreshes of the page (by its script, or a ``<noscript>`` meta refresh).
REFRESH_SECONDS = 30
#: The multiplication sign shown after a ratio.
TIMES = "\u00d7"
#: Lanes of the timeline chart at most (one per source; the last one gathers the rest).
TIMELINE_LANES = 6
OTHER_SOURCES = "other sources"
#: Snapshots listed under "Recent snapshots" (all of the timeline's are in the charts).
RECENT_ROWS = 10

# Chart geometry, in SVG user units (the charts scale to the width of their panel).
# All four share one width, so their text has one size on the page (the panels are alike).
_WIDTH, _LEFT, _RIGHT_MARGIN, _TOP, _BOTTOM_MARGIN = 480, 72, 12, 12, 30
_CHAR_WIDTH = 9.6  # of a character of the charts' text at its largest (16 units, narrow windows)
_COLORS = {"synced": "#16a34a", "local": "#2563eb", "partial": "#d97706"}

#: names, tags and errors as the page shows them (then HTML-escaped by the template)
visible = printable


# --- the page's assets and the policy that allows exactly them -----------------------------------


def _asset(name: str) -> str:
    return (resources.files("stcore") / "dashboard_assets" / name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def _assets() -> tuple[str, str, str]:
    """(template, style, script), read once."""
    style, script = _asset("dashboard.css"), _asset("dashboard.js")
    if "</" in style or "</" in script:
        raise ValueError("an inline style or script must not contain '</'")
    return _asset("dashboard.html"), style, script


@cache
def content_security_policy() -> str:
    """The page's Content-Security-Policy: its own inline style and script (by hash), fetches
    of its own origin (the refresh), and nothing else: no other script, style, image, font,
    frame, form target or ``<base>``, and no framing by other pages."""
    _, style, script = _assets()
    return (
        f"default-src 'none'; script-src {_sha256(script)}; style-src {_sha256(style)}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


# --- numbers and times as the page shows them ----------------------------------------------------


def human_size(size: float) -> str:
    """``1.5 MiB``: binary units, as the command line shows sizes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns


def human_seconds(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def when(value: Any, now: float) -> str:
    """An ISO time from the status as ``2026-11-24 13:11:02 (5 min ago)``, or ``-``."""
    moment = _parse_time(value)
    if moment is None:
        return "-" if value is None else str(value)
    delta = moment.timestamp() - now
    relative = f"in {human_seconds(delta)}" if delta > 0 else f"{human_seconds(-delta)} ago"
    return f"{_utc(moment)} ({relative})"


# --- charts --------------------------------------------------------------------------------------


def nice_ceiling(size: float) -> float:
    """The top of a size axis: the smallest of 1, 2, 2.5 or 5 times a power of ten, in the
    binary unit (B, KiB, MiB...) :func:`human_size` shows ``size`` in, that is >= ``size``."""
    unit = 1.0
    while size / unit >= 1000:
        unit *= 1024
    value = max(size / unit, 1.0)
    power = 10.0 ** math.floor(math.log10(value))
    step = next(s for s in (1, 2, 2.5, 5, 10) if s * power >= value)
    if step * power >= 1000:  # 1000 KiB: 1 MiB reads better
        return 1024 * unit
    return step * power * unit


class _TimeAxis:
    """Maps times to x in ``[left, right]``; one snapshot (or several at the same second) sits
    in the middle of an hour either side."""

    def __init__(self, times: Sequence[float], left: float, right: float) -> None:
        self.left, self.right = left, right
        start, end = (min(times), max(times)) if times else (0.0, 0.0)
        if end - start < 1:
            start, end = start - 3600, end + 3600
        self.start, self.end = start, end

    def x(self, moment: float) -> float:
        share = (moment - self.start) / (self.end - self.start)
        return self.left + share * (self.right - self.left)

    def ticks(self) -> list[dict[str, Any]]:
        """Labels under the axis, as many as fit (2 to 5) without overlapping: the first and
        the last end at the ends of the axis, the others are centered on their time."""
        span = self.end - self.start
        years = {dt.datetime.fromtimestamp(t, dt.UTC).year for t in (self.start, self.end)}
        if span >= 3 * 86400:
            fmt = "%b %d" if len(years) == 1 else "%Y-%m-%d"
        else:
            fmt = "%b %d %H:%M" if span >= 3600 else "%H:%M:%S"
        width = len(dt.datetime.fromtimestamp(self.start, dt.UTC).strftime(fmt)) * _CHAR_WIDTH
        count = max(1, min(4, int((self.right - self.left) / (1.5 * width + 16))))
        ticks = []
        for index in range(count + 1):
            moment = self.start + span * index / count
            anchor = "start" if index == 0 else "end" if index == count else "middle"
            label = dt.datetime.fromtimestamp(moment, dt.UTC).strftime(fmt)
            ticks.append({"x": round(self.x(moment), 1), "label": label, "anchor": anchor})
        return ticks


def _frame(height: int) -> dict[str, Any]:
    return {
        "width": _WIDTH,
        "height": height,
        "left": _LEFT,
        "right": _WIDTH - _RIGHT_MARGIN,
        "top": _TOP,
        "baseline": height - _BOTTOM_MARGIN,
    }


def _describe(point: dict[str, Any]) -> str:
    """A snapshot's tooltip: id, time, sources, tags, sizes, remotes."""
    parts = [str(point.get("id")), _utc(point["moment"])]
    if point.get("sources"):
        parts.append("sources: " + ", ".join(map(str, point["sources"])))
    if point.get("tags"):
        parts.append("tags: " + ", ".join(map(str, point["tags"])))
    parts.append(f"read {human_size(point['size'])}, added {human_size(point['added_bytes'])}")
    if point.get("synced_to"):
        parts.append("on " + ", ".join(map(str, point["synced_to"])))
    if point.get("partial"):
        parts.append("partial")
    return " · ".join(parts)


def _color(point: dict[str, Any]) -> str:
    if point.get("partial"):
        return _COLORS["partial"]
    return _COLORS["synced"] if point.get("synced_to") else _COLORS["local"]


def _points(timeline: dict[str, Any]) -> list[dict[str, Any]]:
    """The timeline's snapshots with a parsed time, oldest first (unreadable ones left out)."""
    points = []
    for snapshot in timeline.get("snapshots") or []:
        moment = _parse_time(snapshot.get("time"))
        if moment is not None:
            points.append(
                {
                    **snapshot,
                    "moment": moment,
                    "size": int(snapshot.get("size") or 0),
                    "added_bytes": int(snapshot.get("added_bytes") or 0),
                    "stored_bytes": int(snapshot.get("stored_bytes") or 0),
                }
            )
    points.sort(key=lambda p: p["moment"])
    return points


def _short(name: str, length: int = 9) -> str:
    return name if len(name) <= length else name[: length - 1] + "\u2026"


def timeline_chart(points: list[dict[str, Any]], earlier: int) -> dict[str, Any]:
    """The snapshots along time, one lane per source (a dot where a snapshot holds it), colored
    by where the snapshot is; at most :data:`TIMELINE_LANES` lanes, the last one "other"."""
    names = sorted({str(n) for p in points for n in p.get("sources") or []})
    if len(names) > TIMELINE_LANES:
        names = [*names[: TIMELINE_LANES - 1], OTHER_SOURCES]
    lanes = names or ["snapshots"]
    chart = _frame(_TOP + 30 * max(2, len(lanes)) + 4 + _BOTTOM_MARGIN)
    axis = _TimeAxis([p["moment"].timestamp() for p in points], chart["left"], chart["right"])
    spacing = (chart["baseline"] - chart["top"]) / len(lanes)
    lane_y = {name: chart["top"] + spacing * (i + 0.5) for i, name in enumerate(lanes)}
    chart["lanes"] = [
        {"y": round(y + 4, 1), "label": _short(name), "title": name} for name, y in lane_y.items()
    ]
    dots = []
    for p in points:
        holds = {str(n) if str(n) in lane_y else OTHER_SOURCES for n in p.get("sources") or []}
        for name in sorted(holds & set(lane_y)) or [lanes[0]]:
            dots.append(
                {
                    "x": round(axis.x(p["moment"].timestamp()), 1),
                    "y": round(lane_y[name], 1),
                    "color": _color(p),
                    "title": _describe(p),
                }
            )
    chart["points"] = dots
    chart["xticks"] = axis.ticks() if points else []
    chart["empty"] = not points
    chart["label"] = f"{len(points)} snapshots over time"
    chart["note"] = f"and {earlier} older snapshots, not shown" if earlier > 0 else ""
    return chart


def axis_size(size: float) -> str:
    """A size axis label: :func:`human_size` without a trailing ``.0`` (``512 KiB``)."""
    number, unit = human_size(size).split()
    return f"{number.removesuffix('.0')} {unit}"


def _size_ticks(chart: dict[str, Any], top: float) -> list[dict[str, Any]]:
    span = chart["baseline"] - chart["top"]
    return [
        {"y": round(chart["baseline"] - span * share, 1), "label": axis_size(top * share)}
        for share in (0, 0.5, 1)
    ]


def stored_chart(points: list[dict[str, Any]], earlier_added: int) -> dict[str, Any]:
    """The repository's stored bytes (what the snapshots added, summed) over time: a step line."""
    chart = _frame(200)
    axis = _TimeAxis([p["moment"].timestamp() for p in points], chart["left"], chart["right"])
    top = nice_ceiling(max([earlier_added, *(p["stored_bytes"] for p in points)]))
    baseline: float = chart["baseline"]
    span: float = baseline - chart["top"]

    def y(value: float) -> float:
        return round(baseline - value / top * span, 1)

    line = [f"M{chart['left']},{y(earlier_added)}"]
    dots = []
    for p in points:
        x = round(axis.x(p["moment"].timestamp()), 1)
        line.append(f"H{x}V{y(p['stored_bytes'])}")
        title = f"{human_size(p['stored_bytes'])} stored after {_describe(p)}"
        dots.append({"x": x, "y": y(p["stored_bytes"]), "title": title})
    line.append(f"H{chart['right']}")
    chart["line"] = "".join(line)
    chart["area"] = chart["line"] + f"V{chart['baseline']}H{chart['left']}Z"
    chart["points"] = dots if len(dots) <= 60 else []  # a line is clearer than a crowd of dots
    chart["yticks"] = _size_ticks(chart, top)
    chart["xticks"] = axis.ticks() if points else []
    chart["empty"] = not points
    chart["label"] = "stored size over time"
    return chart


def added_chart(points: list[dict[str, Any]]) -> dict[str, Any]:
    """What each snapshot added to the repository: one bar per snapshot."""
    chart = _frame(200)
    axis = _TimeAxis([p["moment"].timestamp() for p in points], chart["left"], chart["right"])
    top = nice_ceiling(max([1, *(p["added_bytes"] for p in points)]))
    span = chart["baseline"] - chart["top"]
    plot = chart["right"] - chart["left"]
    width = max(1.5, min(24.0, plot / max(1, len(points)) * 0.6))
    bars = []
    for p in points:
        height = max(1.0, p["added_bytes"] / top * span)
        x = axis.x(p["moment"].timestamp()) - width / 2
        x = min(max(x, chart["left"]), chart["right"] - width)  # inside the plot
        bars.append(
            {
                "x": round(x, 1),
                "y": round(chart["baseline"] - height, 1),
                "width": round(width, 1),
                "height": round(height, 1),
                "color": _color(p),
                "title": _describe(p),
            }
        )
    chart["bars"] = bars
    chart["yticks"] = _size_ticks(chart, top)
    chart["xticks"] = axis.ticks() if points else []
    chart["empty"] = not points
    chart["label"] = "bytes added per snapshot"
    return chart


def dedup_chart(statistics: dict[str, Any]) -> dict[str, Any]:
    """Bytes the snapshots read beside bytes they stored: the deduplication ratio as two bars."""
    read = float(statistics.get("total_size_mb") or 0) * 1e6
    stored = float(statistics.get("stored_size_mb") or 0) * 1e6
    widest = max(read, stored, 1.0)
    ratio = statistics.get("dedup_ratio")
    note = (
        "Deduplication and compression together: the bytes the snapshots read, divided by the "
        "bytes they added to the repository."
        if isinstance(ratio, int | float)
        else "No data stored yet."
    )
    return {
        "width": _WIDTH,
        "height": 200,
        "ratio": f"{ratio:.2f}{TIMES}" if isinstance(ratio, int | float) else "-",
        "bars": [
            {
                "label": f"read by the snapshots: {human_size(read)}",
                "y": 118,
                "width": round(_WIDTH * read / widest, 1),
                "color": _COLORS["local"],
            },
            {
                "label": f"stored in the repository: {human_size(stored)}",
                "y": 176,
                "width": round(_WIDTH * stored / widest, 1),
                "color": _COLORS["synced"],
            },
        ],
        "label": "bytes read beside bytes stored",
        "note": note,
    }


# --- the sections ----------------------------------------------------------------------------


def _cards(document: dict[str, Any], points: list[dict[str, Any]], now: float) -> list[Any]:
    statistics = document.get("statistics") or {}
    daemon = document.get("daemon") or {}
    total = int(statistics.get("total_backups") or 0)
    ratio = statistics.get("dedup_ratio")
    latest = points[-1] if points else None
    remotes = document.get("remotes") or []
    failing = sum(1 for r in remotes if r.get("last_run_ok") is False)
    runs = [(daemon.get(f"next_{kind}"), kind) for kind in ("backup", "sync")]
    upcoming = sorted(
        (moment, kind, value) for value, kind in runs if (moment := _parse_time(value))
    )
    kind, value = (upcoming[0][1], upcoming[0][2]) if upcoming else ("", None)
    return [
        {
            "key": "snapshots",
            "label": "snapshots",
            "value": str(total),
            "detail": f"latest {when(latest['time'], now)}" if latest else "none yet",
        },
        {
            "key": "stored",
            "label": "stored",
            "value": human_size(float(statistics.get("stored_size_mb") or 0) * 1e6),
            "detail": f"read {human_size(float(statistics.get('total_size_mb') or 0) * 1e6)}",
        },
        {
            "key": "dedup",
            "label": "deduplication ratio",
            "value": f"{ratio:.2f}{TIMES}" if isinstance(ratio, int | float) else "-",
            "detail": "bytes read ÷ bytes stored",
        },
        {
            "key": "synced",
            "label": "synced to a remote",
            "value": f"{int(statistics.get('cloud_synced') or 0)} / {total}",
            "detail": f"{len(remotes)} remotes, {failing} failing" if remotes else "no remotes",
        },
        {
            "key": "daemon",
            "label": "daemon",
            "value": "running" if daemon.get("running") else "not running",
            "detail": f"next {kind} {when(value, now)}" if upcoming else "no run scheduled",
        },
    ]


def _remote_state(remote: dict[str, Any]) -> tuple[str, str]:
    if remote.get("last_run_ok") is False:
        return "failing", "failing"
    if remote.get("last_sync") is None:
        return "never", "never synced"
    if remote.get("pending_snapshots"):
        return "pending", "behind"
    return "ok", "in sync"


def _remotes(remotes: Iterable[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    shown = []
    for remote in remotes:
        state, label = _remote_state(remote)
        lag = remote.get("lag_seconds")
        rows = [
            {"label": "url", "value": remote.get("url") or "-"},
            {"label": "last sync", "value": when(remote.get("last_sync"), now)},
            {"label": "sync lag", "value": "never synced" if lag is None else human_seconds(lag)},
            {
                "label": "pending",
                "value": f"{int(remote.get('pending_snapshots') or 0)} snapshots, "
                f"{human_size(int(remote.get('pending_bytes') or 0))}",
            },
            {"label": "failed runs", "value": str(int(remote.get("failures") or 0))},
            {"label": "next run", "value": when(remote.get("next_run"), now)},
        ]
        if remote.get("last_error") is not None:
            rows.append({"label": "last error", "value": str(remote["last_error"]), "error": True})
            rows.append({"label": "error at", "value": when(remote.get("last_error_at"), now)})
        else:
            rows.append({"label": "last error", "value": "-"})
        shown.append(
            {"name": str(remote.get("name")), "state": state, "state_label": label, "rows": rows}
        )
    return shown


def _daemon(daemon: dict[str, Any], now: float) -> list[dict[str, Any]]:
    running = bool(daemon.get("running"))
    rows: list[dict[str, Any]] = [
        {
            "label": "state",
            "value": "running" if running else "not running (start it: `stcore daemon`)",
        }
    ]
    if running:
        for key, label in (("backup_interval", "backs up every"), ("sync_interval", "syncs every")):
            seconds = daemon.get(key)
            if key == "sync_interval" and not daemon.get("auto_sync"):
                rows.append({"label": "syncs", "value": "no (auto-sync is off)"})
            elif isinstance(seconds, int | float):
                rows.append({"label": label, "value": human_seconds(seconds)})
        rows.append({"label": "next backup", "value": when(daemon.get("next_backup"), now)})
        rows.append({"label": "next sync", "value": when(daemon.get("next_sync"), now)})
    last = daemon.get("last_backup")
    if isinstance(last, dict):
        outcome = "ok" if last.get("ok") else "failed"
        rows.append({"label": "last backup", "value": f"{when(last.get('time'), now)}: {outcome}"})
        if last.get("error"):
            rows.append({"label": "its error", "value": str(last["error"]), "error": True})
    return rows


def _recent(points: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "time": _utc(p["moment"]),
            "id": str(p.get("id")),
            "sources": ", ".join(map(str, p.get("sources") or [])) or "-",
            "tags": ", ".join(map(str, p.get("tags") or [])) or "-",
            "size": human_size(p["size"]),
            "added": human_size(p["added_bytes"]),
            "synced": ", ".join(map(str, p.get("synced_to") or [])) or "-",
        }
        for p in reversed(points[-RECENT_ROWS:])
    ]


# --- the page ------------------------------------------------------------------------------------


def page_data(
    document: dict[str, Any], *, now: float | None = None, refresh_seconds: int = REFRESH_SECONDS
) -> dict[str, Any]:
    """What the template shows, computed from the status document (or its error)."""
    now = time.time() if now is None else now
    statistics = document.get("statistics") or {}
    page: dict[str, Any] = {
        "refresh_seconds": int(refresh_seconds),
        "generated": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
        "generated_shown": _utc(dt.datetime.fromtimestamp(now, dt.UTC)),
        "repository": statistics.get("repository") or "-",
        "provider": statistics.get("provider") or "-",
        "error": None,
    }
    if not document.get("success"):
        page["error"] = str(document.get("error") or "unknown error")
        return page
    timeline = document.get("timeline") or {}
    points = _points(timeline)
    page.update(
        {
            "cards": _cards(document, points, now),
            "timeline": timeline_chart(points, int(timeline.get("earlier_snapshots") or 0)),
            "stored": stored_chart(points, int(timeline.get("earlier_added_bytes") or 0)),
            "added": added_chart(points),
            "dedup": dedup_chart(statistics),
            "daemon": _daemon(document.get("daemon") or {}, now),
            "daemon_state": "ok" if (document.get("daemon") or {}).get("running") else "never",
            "daemon_label": (
                "running" if (document.get("daemon") or {}).get("running") else "not running"
            ),
            "remotes": _remotes(document.get("remotes") or [], now),
            "recent": _recent(points),
        }
    )
    return page


@cache
def _template() -> Any:
    from jinja2 import Environment
    from markupsafe import Markup

    def finalize(value: Any) -> Any:
        """Every ``{{ value }}``: text made visible, then (autoescape) HTML-escaped."""
        if isinstance(value, str) and not isinstance(value, Markup):
            return visible(value)
        return value

    environment = Environment(autoescape=True, finalize=finalize, keep_trailing_newline=True)
    source, _, _ = _assets()
    return environment.from_string(source)


def render_dashboard(
    document: dict[str, Any], *, now: float | None = None, refresh_seconds: int = REFRESH_SECONDS
) -> str:
    """The dashboard page for a status document (an error page for ``{"success": false}``)."""
    from markupsafe import Markup

    _, style, script = _assets()
    page = page_data(document, now=now, refresh_seconds=refresh_seconds)
    return str(_template().render(page=page, style=Markup(style), script=Markup(script)))
