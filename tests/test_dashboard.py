"""The status dashboard at ``/``: its HTML through Flask's test client (0, 1 and many snapshots,
a failing remote, hostile names, the token, the policy), the status fields it is drawn from, and
a real headless Chromium against `stcore serve` (screenshots kept in .cache/artifacts/)."""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import threading
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import attrs
import numpy as np
import pytest

import stcore
from stcore.config import load_settings
from stcore.daemon import AutoSync, RunRecord
from stcore.errors import StcoreError
from tests.test_status_web import TOKEN, _request, serving, stcore_serve

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".cache" / "artifacts"
CHROMIUM = "/usr/bin/chromium"

TOML = """\
[repository]
url = "repo"

[sources.data]
type = "files"
path = "data"

[remotes.mirror]
url = "mirror"

[remotes.gone]
url = "gone"          # never created: every sync to it fails
"""

HOSTILE_TAG = '<script>alert("t")</script> [x] [bold red]\x1b[2J\x07\u202e&amp;'
HOSTILE_SOURCE = "<img src=x onerror=alert(1)> [x]\x1b]0;title\x07"
HOSTILE_REMOTE = "<script>alert('r')</script> [red]\u202e"


def make_project(
    root: Path, snapshots: int, *, toml: str = TOML, tags: tuple[str, ...] = ("nightly",)
) -> Path:
    """``snapshots`` backups six hours apart, ending an hour ago; the first half synced to
    ``mirror``; one failed sync to ``gone`` (and to any other remote but ``mirror``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir()
    (root / "mirror").mkdir()
    (root / "stcore.toml").write_text(toml)
    settings = load_settings(root / "stcore.toml")
    assert settings.repository is not None
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1 + 6 * snapshots)
    with stcore.init_repository(settings.repository) as repo:
        for index in range(snapshots):
            (root / "data" / f"file{index}.bin").write_bytes(os.urandom(2000 * (index + 1)))
            sources = [
                stcore.make_source(source.name, "files", {"path": str(root / "data")})
                for source in settings.sources
            ]
            when = start + dt.timedelta(hours=6 * (index + 1))
            repo.backup(sources, tags=list(tags), time=when)
            if index == (snapshots - 1) // 2:
                repo.sync(settings.remote("mirror"))
        for remote in settings.remotes:
            if remote.name != "mirror":
                with pytest.raises(StcoreError, match="does not exist"):
                    repo.sync(remote)
    return root


def _app(project: Path, **options: Any) -> Any:
    from stcore.web import make_app

    return make_app(config=str(project / "stcore.toml"), cache_seconds=0, **options)


class Page(HTMLParser):
    """The elements of an HTML page: tag, attributes and text (entities decoded)."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "source", "wbr"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        parent = self._open[-1] if self._open else None
        element = {"tag": tag, "attrs": dict(attrs), "text": "", "parent": parent}
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        parent = self._open[-1] if self._open else None
        self.elements.append({"tag": tag, "attrs": dict(attrs), "text": "", "parent": parent})

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()["tag"] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.elements
            if (tag is None or e["tag"] == tag)
            and all(e["attrs"].get(k.rstrip("_")) == v for k, v in attrs.items())
        ]

    def one(self, tag: str | None = None, **attrs: str) -> dict[str, Any]:
        found = self.find(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]

    def text(self, element_id: str) -> str:
        return " ".join(self.one(id=element_id)["text"].split())

    def fields(self, container: dict[str, Any]) -> dict[str, str]:
        """The ``<dt>`` -> ``<dd>`` pairs inside ``container`` (texts with spaces collapsed)."""

        def inside(element: dict[str, Any]) -> bool:
            parent = element["parent"]
            while parent is not None and parent is not container:
                parent = parent["parent"]
            return parent is container

        pairs = [e for e in self.elements if e["tag"] in ("dt", "dd") and inside(e)]
        texts = [" ".join(e["text"].split()) for e in pairs]
        assert [e["tag"] for e in pairs] == ["dt", "dd"] * (len(pairs) // 2)
        return dict(zip(texts[::2], texts[1::2], strict=True))

    def card(self, key: str) -> tuple[str, str]:
        """The value and the detail of the summary card ``key``."""
        card = self.one(id=f"card-{key}")
        parts = {
            e["attrs"].get("class"): " ".join(e["text"].split())
            for e in self.elements
            if e["parent"] is card
        }
        return parts["value"], parts["detail"]


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _policy(header: str) -> dict[str, list[str]]:
    directives = [d.split() for d in header.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


def _get_page(client: Any, path: str = "/", **kwargs: Any) -> tuple[Any, Page]:
    response = client.get(path, **kwargs)
    return response, Page(response.get_data(as_text=True))


# --- the HTML ------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 30])
def test_the_page_renders_with_0_1_and_many_snapshots(tmp_path: Path, count: int) -> None:
    project = make_project(tmp_path / "project", count)
    response, page = _get_page(_app(project).test_client())
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    assert page.one("main", id="dashboard")["attrs"]["data-refresh-seconds"] == "30"
    for chart in ("chart-timeline", "chart-stored", "chart-added", "chart-dedup"):
        assert page.one("svg", id=chart)["attrs"]["viewbox"].startswith("0 0 ")
    assert page.card("snapshots")[0] == str(count)
    dots = page.find("circle", **{"class": "snapshot"})
    bars = page.find("rect", **{"class": "bar"})
    rows = page.one(id="recent")
    if count == 0:
        assert not dots and len(bars) == 2  # the two bars of the deduplication chart, empty
        assert page.text("chart-timeline").endswith("no snapshots yet")
        assert "no snapshots yet" in page.text("chart-added")
        assert "No snapshots yet" in rows["text"]
        assert page.card("dedup")[0] == "-"
        return
    assert len(dots) == count and len(bars) == count + 2
    assert "no snapshots yet" not in page.text("timeline")
    assert len([e for e in page.find("tr") if e["text"].count("nightly")]) == min(count, 10)
    # dots and bars run left to right in time, inside the plot
    xs = [float(d["attrs"]["cx"]) for d in dots]
    assert xs == sorted(xs) and 0 < xs[0] <= xs[-1] < 480
    if count > 1:
        assert xs[0] < xs[-1]
    # the tooltips name every snapshot; the newest is on no remote yet, the oldest on mirror
    status = _app(project).test_client().get("/api/cloud/status").get_json()
    ids = [s["id"] for s in status["timeline"]["snapshots"]]
    assert [d["text"].split(" · ")[0] for d in dots] == ids
    assert dots[0]["attrs"]["fill"] == "#16a34a" and dots[-1]["attrs"]["fill"] == (
        "#16a34a" if count == 1 else "#2563eb"
    )
    ratio = status["statistics"]["dedup_ratio"]
    assert page.card("dedup")[0] == f"{ratio:.2f}\u00d7"


def test_a_failing_remote_shows_its_error_redacted_and_the_synced_one_its_lag(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "project", 4)
    response, page = _get_page(_app(project).test_client())
    assert response.status_code == 200
    remotes = {
        e["text"].split()[0]: e for e in page.find("article", **{"class": "remote"})
    }  # daemon, mirror, gone
    assert set(remotes) == {"daemon", "mirror", "gone"}
    gone, mirror = remotes["gone"], remotes["mirror"]
    assert gone["attrs"]["data-state"] == "failing"
    fields = page.fields(gone)
    assert "does not exist" in fields["last error"] and "<redacted>" in fields["last error"]
    assert fields["last sync"] == "-" and fields["sync lag"] == "never synced"
    assert fields["pending"].startswith("4 snapshots, ") and fields["failed runs"] == "1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ (s|min) ago\)", fields["error at"])
    assert fields["url"] == "<redacted>" and fields["next run"] == "-"
    assert page.one("p", **{"class": "error"})["parent"]["tag"] == "dd"
    assert mirror["attrs"]["data-state"] == "pending"  # behind: 2 of 4 not synced yet
    fields = page.fields(mirror)
    assert re.fullmatch(r"\d+ (s|min)", fields["sync lag"]), fields
    assert fields["pending"].startswith("2 snapshots, ") and fields["last error"] == "-"
    assert remotes["daemon"]["attrs"]["data-state"] == "never"
    assert page.fields(remotes["daemon"])["state"].startswith("not running")
    assert page.card("synced") == ("2 / 4", "2 remotes, 1 failing")
    text = response.get_data(as_text=True)
    assert str(project) not in text and str(tmp_path) not in text  # paths are redacted


def test_hostile_names_are_escaped_and_their_controls_shown(tmp_path: Path) -> None:
    toml = TOML.replace("[sources.data]", f"[sources.{json.dumps(HOSTILE_SOURCE)}]").replace(
        "[remotes.gone]", f"[remotes.{json.dumps(HOSTILE_REMOTE)}]"
    )
    project = make_project(tmp_path / "project", 3, toml=toml, tags=(HOSTILE_TAG, "[x]"))
    response, page = _get_page(_app(project).test_client())
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    # nothing of the names became markup: one script (the page's own), no image, no handler
    assert len(page.find("script")) == 1 and not page.find("img")
    assert not [e for e in page.elements if any(a.startswith("on") for a in e["attrs"])]
    for raw in ("<script>alert", "<img", "\x1b", "\x07", "\u202e"):
        assert raw not in body, raw
    # ... and all of them are shown, as text, controls as escapes
    shown_tag = '<script>alert("t")</script> [x] [bold red]\\x1b[2J\\x07\\u202e&amp;'
    shown_source = "<img src=x onerror=alert(1)> [x]\\x1b]0;title\\x07"
    shown_remote = "<script>alert('r')</script> [red]\\u202e"
    recent = page.text("recent")
    assert shown_tag in recent and shown_source in recent and ", [x]" in recent
    lanes = page.find("text", **{"class": "lane"})  # the <title> (the whole name), the label
    assert [e["text"] for e in lanes] == [shown_source + "<img src\u2026"]
    failing = page.one("article", **{"data-state": "failing"})
    assert shown_remote in failing["text"] and "does not exist" in failing["text"]
    assert shown_tag in page.find("circle", **{"class": "snapshot"})[0]["text"]
    # the JSON keeps the exact text
    status = _app(project).test_client().get("/api/cloud/status").get_json()
    assert status["timeline"]["snapshots"][0]["tags"] == sorted([HOSTILE_TAG, "[x]"])
    assert status["timeline"]["snapshots"][0]["sources"] == [HOSTILE_SOURCE]
    assert {r["name"] for r in status["remotes"]} == {"mirror", HOSTILE_REMOTE}


def test_a_non_utf8_name_renders(tmp_path: Path) -> None:
    """A name holding bytes that are not UTF-8 (a surrogate in Python) is shown as ``\\xNN``."""
    from stcore.dashboard import render_dashboard

    document = {
        "success": True,
        "statistics": {"total_backups": 1, "repository": "<redacted>", "provider": "local"},
        "remotes": [{"name": "caf\udce9", "last_error": "bad \udcff\x00", "last_run_ok": False}],
        "timeline": {
            "snapshots": [{"id": "s1", "time": "2026-11-24T13:11:02+00:00", "tags": ["t\udce9"]}]
        },
    }
    page = render_dashboard(document)
    page.encode("utf-8")  # no lone surrogate left
    assert "caf\\xe9" in page and "bad \\xff\\x00" in page and "t\\xe9" in page


def test_the_page_needs_the_token_when_one_is_set_and_a_loopback_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STCORE_STATUS_TOKEN", raising=False)
    project = make_project(tmp_path / "project", 2)
    with serving(_app(project, token=TOKEN)) as port:
        code, headers, body = _request(port, "/")
        assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert b"<html" not in body and b"snapshot" not in body
        assert _request(port, "/", headers={"Authorization": "Bearer wrong"})[0] == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        code, headers, body = _request(port, "/", headers=bearer)
        assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert b'id="chart-timeline"' in body and TOKEN.encode() not in body
        assert _request(port, "/", host="evil.example", headers=bearer)[0] == 403
    with serving(_app(project)) as port:  # no token: loopback Host names only
        assert _request(port, "/")[0] == 200
        assert _request(port, "/", host="rebound.example")[0] == 403


def test_the_policy_allows_exactly_the_pages_own_style_and_script(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", 1)
    client = _app(project).test_client()
    response, page = _get_page(client)
    policy = _policy(response.headers["Content-Security-Policy"])
    script, style = page.one("script")["text"], page.one("style")["text"]
    assert policy == {
        "default-src": ["'none'"],
        "script-src": [_sha256(script)],
        "style-src": [_sha256(style)],
        "connect-src": ["'self'"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    # nothing is loaded from anywhere: no src, no stylesheet link, no absolute URL
    assert not [e for e in page.elements if "src" in e["attrs"] or e["tag"] == "link"]
    assert not re.search(r"(?i)\b(?:https?:)?//", response.get_data(as_text=True))
    # the JSON keeps its own, stricter policy
    json_policy = client.get("/api/cloud/status").headers["Content-Security-Policy"]
    assert json_policy == "default-src 'none'; frame-ancestors 'none'"


def test_a_repository_that_cannot_be_read_gives_an_error_page(tmp_path: Path) -> None:
    from cloud_storage_manager import CloudStorageManager
    from stcore.web import make_app

    missing = tmp_path / "unmounted" / "repo"
    client = make_app(CloudStorageManager(repository=str(missing))).test_client()
    response, page = _get_page(client)
    assert response.status_code == 500
    assert "Content-Security-Policy" in response.headers
    error = page.text("status-error")
    assert error.startswith("The status cannot be read") and str(tmp_path) not in error
    assert not page.find("svg") and not missing.exists()


def test_the_page_under_a_url_prefix_links_to_its_own_endpoints(tmp_path: Path) -> None:
    from flask import Flask

    from stcore.web import make_blueprint

    project = make_project(tmp_path / "project", 2)
    app = Flask("host-application")
    app.register_blueprint(
        make_blueprint(config=str(project / "stcore.toml"), cache_seconds=0), url_prefix="/ops"
    )
    client = app.test_client()
    response, page = _get_page(client, "/ops/")
    assert response.status_code == 200 and page.find("svg", id="chart-stored")
    links = {e["text"]: e["attrs"]["href"] for e in page.find("a")}
    assert set(links) == {"status JSON", "metrics", "health"}
    for href in links.values():
        assert client.get(urljoin("/ops/", href)).status_code == 200
    assert client.get("/ops/api/cloud/status").get_json()["statistics"]["total_backups"] == 2


def test_the_page_lists_nothing_in_the_backend_per_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from st_local.backend import LocalBackend

    project = make_project(tmp_path / "project", 3)
    calls: list[str] = []
    original = LocalBackend.list

    def counting_list(self: LocalBackend, prefix: str = "") -> Any:
        calls.append(prefix)
        return original(self, prefix)

    monkeypatch.setattr(LocalBackend, "list", counting_list)
    client = _app(project).test_client()
    assert client.get("/").status_code == 200
    after_warm_up = len(calls)
    for _ in range(20):
        assert client.get("/").status_code == 200
    assert len(calls) == after_warm_up, calls[after_warm_up:]


# --- the status fields the page is drawn from -----------------------------------------------------


def test_status_json_keeps_its_fields_and_adds_timeline_daemon_and_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stcore import web

    project = make_project(tmp_path / "project", 5)
    status = _app(project).test_client().get("/api/cloud/status").get_json()
    assert set(status) == {"success", "statistics", "recent_backups", "remotes", "daemon",
                           "timeline"}  # fmt: skip
    statistics = status["statistics"]
    assert set(statistics) == {
        "total_backups", "total_size_mb", "stored_size_mb", "cloud_synced", "provider",
        "repository", "latest_backup", "dedup_ratio",
    }  # fmt: skip
    assert len(status["recent_backups"]) == 5 and statistics["total_backups"] == 5
    timeline = status["timeline"]
    points = timeline["snapshots"]
    assert timeline["earlier_snapshots"] == 0 and timeline["earlier_added_bytes"] == 0
    assert [p["id"] for p in points] == [b["backup_id"] for b in reversed(status["recent_backups"])]
    assert [p["time"] for p in points] == sorted(p["time"] for p in points)
    running = 0
    for point in points:
        running += point["added_bytes"]
        assert point["stored_bytes"] == running and point["sources"] == ["data"]
    size = sum(p["size"] for p in points)
    assert statistics["dedup_ratio"] == round(size / running, 3)
    assert [bool(p["synced_to"]) for p in points] == [True, True, True, False, False]
    assert status["daemon"] == {
        "running": False, "auto_sync": False, "backup_interval": None, "sync_interval": None,
        "next_backup": None, "next_sync": None, "last_backup": None,
    }  # fmt: skip

    monkeypatch.setattr(web, "TIMELINE_LIMIT", 3)  # older snapshots are counted, not listed
    limited = _app(project).test_client().get("/api/cloud/status").get_json()
    assert [p["id"] for p in limited["timeline"]["snapshots"]] == [p["id"] for p in points[2:]]
    assert limited["timeline"]["earlier_snapshots"] == 2
    assert limited["timeline"]["earlier_added_bytes"] == points[1]["stored_bytes"]
    assert limited["timeline"]["snapshots"][-1]["stored_bytes"] == running
    page = Page(_app(project).test_client().get("/").get_data(as_text=True))
    assert "and 2 older snapshots, not shown" in page.text("timeline")


def test_a_running_daemon_shows_its_next_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", 2)
    settings = load_settings(project / "stcore.toml")
    ran = threading.Event()

    def on_run(record: RunRecord) -> None:
        if record.event == "sync":
            ran.set()

    only_gone = attrs.evolve(settings, configured_remotes=(settings.remote("gone"),))
    with AutoSync(settings=only_gone, backup_interval=7200, sync_interval=3600, on_run=on_run):
        assert ran.wait(30)
        status = _app(project).test_client().get("/api/cloud/status").get_json()
        page = Page(_app(project).test_client().get("/").get_data(as_text=True))
    daemon = status["daemon"]
    assert daemon["running"] is True and daemon["auto_sync"] is True
    assert daemon["backup_interval"] == 7200 and daemon["sync_interval"] == 3600
    assert daemon["next_sync"] is not None and daemon["last_backup"]["ok"] is True
    card = page.one("article", id="daemon")
    assert card["attrs"]["data-state"] == "ok"
    fields = page.fields(card)
    assert fields["state"] == "running"
    assert fields["backs up every"] == "2 h" and fields["syncs every"] == "60 min"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in (59|60) min\)", fields["next sync"])
    assert re.fullmatch(r".* \(in (1|2) h( \d+ min)?\)", fields["next backup"])
    assert re.fullmatch(r".* \(\d+ (s|min) ago\): ok", fields["last backup"])
    assert page.card("daemon")[0] == "running"
    assert page.card("daemon")[1].startswith("next sync ")


# --- a real browser ------------------------------------------------------------------------------


def _chromium() -> str:
    """Debian's chromium, or a skip saying why (a failure in CI: scripts/test installs it)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI is set but {CHROMIUM} is missing: scripts/test installs it with apt-get")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; scripts/test does it)")


def _browse(chromium: str, home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run, with its profile, cache and config in ``home``, no proxy and
    none of its own network traffic; its console messages go to stderr (``CONSOLE``)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-proxy-server", "--hide-scrollbars",
        "--run-all-compositor-stages-before-draw",  # a screenshot of the whole page, painted
        f"--user-data-dir={home / 'profile'}", "--enable-logging=stderr", "--v=0",
        *args, url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def decode_png(data: bytes) -> tuple[int, int, np.ndarray]:
    """A PNG's width, height and pixels (height x width x RGB), for the 8-bit, non-interlaced
    RGB(A) PNGs Chromium writes; every chunk's CRC and the data's length are checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks = 8, collections.defaultdict(list)
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"damaged {kind!r} chunk"
        chunks[kind].append(body)
        position += 12 + length
    assert b"IEND" in chunks
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    step = 3 if color == 2 else 4
    stride = width * step
    raw = np.frombuffer(zlib.decompress(b"".join(chunks[b"IDAT"])), np.uint8)
    assert raw.size == height * (stride + 1)
    lines = raw.reshape(height, stride + 1)
    pixels = np.zeros((height, stride), np.uint8)
    previous = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = int(lines[y, 0]), lines[y, 1:]
        if kind == 0:  # None
            current = line.copy()
        elif kind == 1:  # Sub: a running sum per channel
            summed = np.cumsum(line.reshape(-1, step).astype(np.int64), axis=0)
            current = (summed % 256).astype(np.uint8).reshape(-1)
        elif kind == 2:  # Up
            current = line + previous
        else:  # Average, Paeth: each byte needs the one before it
            out, up = bytearray(line.tobytes()), previous.tobytes()
            for i in range(stride):
                a = out[i - step] if i >= step else 0
                b, c = up[i], (up[i - step] if i >= step else 0)
                if kind == 3:
                    out[i] = (out[i] + ((a + b) >> 1)) & 255
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    out[i] = (out[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            current = np.frombuffer(bytes(out), np.uint8)
        pixels[y] = previous = current
    return width, height, pixels.reshape(height, width, step)[:, :, :3]


def _colors(pixels: np.ndarray) -> collections.Counter[str]:
    flat = pixels.reshape(-1, 3)
    packed = (flat[:, 0].astype(np.uint32) << 16) | (flat[:, 1].astype(np.uint32) << 8) | flat[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    return collections.Counter({f"{v:06x}": int(c) for v, c in zip(values, counts, strict=True)})


def _check_screenshot(path: Path, width: int, height: int) -> collections.Counter[str]:
    """``path`` is a real PNG of that size, not blank: no color covers 80% of it, it has the
    many colors of text and charts, and so has each fifth of it, top to bottom."""
    assert path.is_file() and path.stat().st_size > 5000, path
    shape = decode_png(path.read_bytes())
    assert shape[:2] == (width, height)
    colors = _colors(shape[2])
    most, count = colors.most_common(1)[0]
    assert count < 0.8 * width * height, f"{path.name} is mostly one color (#{most})"
    assert len(colors) > 50, f"{path.name} has only {len(colors)} colors"
    for band in np.array_split(shape[2], 5):  # painted top to bottom, not cut short
        assert len(_colors(band)) > 10, f"{path.name} has a blank band"
    return colors


@pytest.mark.slow
def test_chromium_renders_the_dashboard_runs_its_refresh_and_takes_a_screenshot(
    tmp_path: Path,
) -> None:
    chromium = _chromium()
    project = make_project(tmp_path / "project", 8)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with stcore_serve(project) as (server, url):
        page_url = url + "/"
        # The DOM after the scripts ran, 65 s of (virtual) time later: two refreshes done
        dom = _browse(chromium, tmp_path / "b1", page_url, "--window-size=1200,900",
                      "--virtual-time-budget=65000", "--dump-dom")  # fmt: skip
        assert not _console(dom.stderr), _console(dom.stderr)  # no CSP refusal, no script error
        page = Page(dom.stdout)
        body = page.one("body")["attrs"]
        assert body.get("data-refresh") == "ok", body  # the script ran and swapped the page in
        assert int(body.get("data-refreshes", "0")) >= 1, body
        assert page.text("refresh-note").startswith("updated ")
        for chart in ("chart-timeline", "chart-stored", "chart-added", "chart-dedup"):
            assert page.find("svg", id=chart), chart
        assert len(page.find("circle", **{"class": "snapshot"})) == 8
        assert page.one("article", **{"data-state": "failing"})["text"].split()[0] == "gone"
        log = (project / "serve.log").read_text()
        assert log.count('"GET / HTTP/1.1" 200') >= 2  # the page, then the refresh's fetch

        # What it looks like, wide and narrow
        wide = tmp_path / "dashboard.png"
        shot = _browse(chromium, tmp_path / "b2", page_url, "--window-size=1200,900",
                       "--virtual-time-budget=3000", f"--screenshot={wide}")  # fmt: skip
        assert not _console(shot.stderr), _console(shot.stderr)
        colors = _check_screenshot(wide, 1200, 900)
        for chart_color in ("2563eb", "16a34a"):  # the charts' blue and green were painted
            assert colors[chart_color] > 200, (chart_color, colors.most_common(8))
        narrow = tmp_path / "dashboard-narrow.png"
        _browse(chromium, tmp_path / "b3", page_url, "--window-size=390,1400",
                "--virtual-time-budget=3000", f"--screenshot={narrow}")  # fmt: skip
        _check_screenshot(narrow, 390, 1400)
        for shot_path in (wide, narrow):
            shutil.copyfile(shot_path, ARTIFACTS / shot_path.name)
        server.terminate()
        assert server.wait(timeout=60) == 0
