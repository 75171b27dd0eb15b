"""The status API: a Flask blueprint with the seed's ``/api/cloud/status``, health, metrics and
the status dashboard.

Mount it in the application (``app.register_blueprint(make_blueprint())``) or run it alone with
``stcore serve``. Flask and prometheus_client are the optional extra ``stcore[web]``; they are
imported only here, and only when a blueprint is made, so the core never needs them.

- ``GET /``: the dashboard, an HTML page :mod:`stcore.dashboard` renders from the same status
  document (charts inline SVG, no other request but its own refresh; its Content-Security-Policy
  allows its inline style and script by hash, and fetches of its own origin only).
- ``GET /api/cloud/status``: ``{"success", "statistics", "recent_backups", "remotes"}``, the
  fields of ``cloud_storage.status()``, answered from the catalog (``stored_size_mb`` is what the
  snapshots added, per the catalog: the server never lists the backend), plus ``daemon``,
  ``timeline`` (the newest :data:`TIMELINE_LIMIT` snapshots, oldest first, for the charts) and
  ``statistics.dedup_ratio``.
- ``GET /healthz``: ``{"ok": true, ...}``, or 503 when the repository cannot be opened.
- ``GET /metrics``: Prometheus text, from a registry made per request (no global state, so two
  blueprints in one process never clash): ``stcore_backups``, ``stcore_stored_bytes``,
  ``stcore_sync_lag_seconds``, ``stcore_sync_pending_snapshots``, ``stcore_sync_pending_bytes``,
  ``stcore_sync_failures_total`` (the last four per remote) and ``stcore_daemon_running``.

Safe by default (docs/cli.md, ``stcore serve``):

- only loopback ``Host`` names are answered (``localhost``, ``127.0.0.1``, ``[::1]``, any port),
  plus the names in ``allowed_hosts``: a web page that rebinds its own DNS name to 127.0.0.1 gets
  403, not the status;
- with a token (``token``, else ``STCORE_STATUS_TOKEN``) every endpoint needs
  ``Authorization: Bearer <token>``; ``/healthz`` still answers without it, but only
  ``{"ok": ...}`` (probes of load balancers and orchestrators rarely send tokens);
- local paths, bucket names, URLs and endpoints are redacted unless ``show_paths``; parts that
  look like credentials are redacted always;
- answers are computed from the catalog and kept ``cache_seconds``; the only listing is the
  catalog's look for new snapshots (``snapshots/`` only), at most every ``refresh_seconds``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from stcore.errors import ConfigError, StcoreError, WebUnavailableError

if TYPE_CHECKING:
    from flask import Blueprint, Flask
    from flask.typing import ResponseReturnValue
    from prometheus_client.metrics_core import Metric

    from cloud_storage_manager import CloudStorageManager
    from stcore.config import RemoteConfig
    from stcore.models import SnapshotManifest
    from stcore.repository import Repository

INSTALL_HINT = "pip install 'stcore[web]'"

#: Host names always answered (with any port): only a local client sends them.
LOOPBACK_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
#: Seconds an answer is reused before the catalog is read again.
DEFAULT_CACHE_SECONDS = 5.0
#: Seconds between two looks for snapshots the catalog does not know (a listing of snapshots/).
DEFAULT_REFRESH_SECONDS = 60.0
#: Snapshots the status document's ``timeline`` lists (the newest; older ones are only counted).
TIMELINE_LIMIT = 500
#: What replaces a redacted path, URL, bucket name or secret.
REDACTED = "<redacted>"
#: The environment variable holding the bearer token (``--token-file`` comes first).
TOKEN_VARIABLE = "STCORE_STATUS_TOKEN"

# Headers on every answer: JSON and text are data, never a page to render or sniff.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


def _require_web() -> None:
    try:
        import flask  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise WebUnavailableError(
            f"the web API needs Flask and prometheus_client ({exc.name} is missing): {INSTALL_HINT}"
        ) from None


# --- Host names and tokens -----------------------------------------------------------------------


def host_name(value: str) -> str | None:
    """The name part of a ``Host`` header or an ``--allow-host`` NAME, lower case, without the
    port, an IPv6 address in brackets (``[::1]``); None if it is malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
        return f"[{name}]"
    if value.count(":") > 1:  # a bare IPv6 address
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return None
        return f"[{value}]"
    name, colon, port = value.partition(":")
    if (colon and not port.isdigit()) or not re.fullmatch(r"[a-z0-9._-]+", name):
        return None
    return name


def allowed_host_names(extra: Iterable[str] = ()) -> frozenset[str]:
    """The loopback names plus ``extra`` (normalized); ValueError names a malformed one."""
    names = set(LOOPBACK_HOSTS)
    for value in extra:
        name = host_name(value)
        if name is None:
            raise ValueError(f"not a host name or address: {value!r}")
        names.add(name)
    return frozenset(names)


def is_loopback(address: str) -> bool:
    """Whether listening on ``address`` is reachable from this machine only."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _checked_token(token: str, where: str) -> str:
    token = token.strip()
    if not token:
        raise ConfigError(f"{where} holds no token (it is empty)")
    if not all("!" <= c <= "~" for c in token):
        raise ConfigError(f"{where}: the bearer token must be printable ASCII without spaces")
    return token


def read_token(token_file: str | None = None) -> str | None:
    """The bearer token: the first line of ``token_file``, else ``STCORE_STATUS_TOKEN``, else
    None. There is no command-line option for the token itself: ``ps`` shows command lines."""
    if token_file is not None:
        try:
            with open(os.path.expanduser(token_file)) as handle:
                first = handle.readline()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            raise ConfigError(f"cannot read the token file {token_file}: {reason or exc}") from None
        return _checked_token(first, f"the token file {token_file}")
    value = os.environ.get("STCORE_STATUS_TOKEN")
    if value is None:
        return None
    return _checked_token(value, TOKEN_VARIABLE)


def _bearer(header: str | None) -> bytes | None:
    """The token an ``Authorization: Bearer <token>`` header carries."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip().encode("latin-1", "replace")


# --- redaction -----------------------------------------------------------------------------------

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
_SECRET = re.compile(
    r"(?i)(?P<key>\b[\w-]*?(?:password|passwd|secret|token|credentials?|signature|sig|"
    r"accountkey|access[_-]?key(?:[_-]?id)?|api[_-]?key|session[_-]?key)\b['\"]?\s*[=:]\s*['\"]?)"
    r"(?P<value>[^\s&;,'\"()<>\[\]{}]+)"
)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_LOCATION = re.compile(
    r"(?P<url>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+)"
    r"|(?P<path>(?<![\w.~/\\-])(?:~|[A-Za-z]:)?[/\\][^\s'\"<>]+)"
)
_TRAILING = ".,;:)]}"


def redact_secrets(text: str) -> str:
    """``text`` without what looks like a credential: URL user info, ``password=``, ``token:``,
    ``sig=``, ``AccountKey=`` values and AWS access key ids."""
    text = _USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    text = _SECRET.sub(rf"\g<key>{REDACTED}", text)
    return _AWS_KEY_ID.sub(REDACTED, text)


def redact_location(location: str, *, show_paths: bool = False) -> str:
    """A repository or remote location as the status shows it: ``s3://<redacted>`` or
    ``<redacted>`` (a local path), or with ``show_paths`` as it is, minus credentials."""
    if show_paths:
        return redact_secrets(location)
    scheme, sep, _ = location.partition("://")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return f"{scheme}://{REDACTED}"
    return REDACTED


def _location_replacement(match: re.Match[str]) -> str:
    found = match.group(0)
    kept = len(found.rstrip(_TRAILING))
    if match.group("url"):
        return redact_location(found[:kept]) + found[kept:]
    return REDACTED + found[kept:]


def redact_text(text: str, known: Iterable[str] = (), *, show_paths: bool = False) -> str:
    """Free text (an error message) without credentials and, unless ``show_paths``, without
    local paths, URLs, and the ``known`` locations and their bucket names."""
    if not show_paths:
        known = sorted(set(known), key=len, reverse=True)
        for location in known:  # whole, first: a path may hold spaces
            if "/" in location or "\\" in location:
                text = text.replace(location, redact_location(location))
        text = _LOCATION.sub(_location_replacement, text)
        for location in known:  # a bucket named in words ("bucket acme-backups not found")
            _, sep, rest = location.partition("://")
            bucket = rest.split("/", 1)[0].rpartition("@")[2]
            if sep and len(bucket) >= 3:
                text = re.sub(rf"(?<![\w.-]){re.escape(bucket)}(?![\w-])", REDACTED, text)
    return redact_secrets(text)


# --- what the endpoints answer -------------------------------------------------------------------


def metric_families(repository: Repository, remotes: Any) -> list[Metric]:
    """The metrics for one repository, computed now from the catalog (no backend listing)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from stcore.tasks import read_state, remote_status

    totals = repository.catalog.totals()
    state = read_state(repository)
    backups = GaugeMetricFamily("stcore_backups", "Snapshots (backups) in the repository.")
    backups.add_metric([], totals["snapshots"])
    stored_bytes = GaugeMetricFamily(
        "stcore_stored_bytes",
        "Bytes the snapshots added to the repository when made, per the catalog.",
    )
    stored_bytes.add_metric([], totals["added_bytes"])
    running = GaugeMetricFamily(
        "stcore_daemon_running", "1 if an auto-sync scheduler runs for this repository here."
    )
    running.add_metric([], 1 if state and state["running"] else 0)
    lag = GaugeMetricFamily(
        "stcore_sync_lag_seconds",
        "Seconds since the last successful sync to the remote (+Inf if there was none).",
        labels=["remote"],
    )
    pending_snapshots = GaugeMetricFamily(
        "stcore_sync_pending_snapshots", "Snapshots not yet on the remote.", labels=["remote"]
    )
    pending_bytes = GaugeMetricFamily(
        "stcore_sync_pending_bytes", "Bytes those snapshots added locally.", labels=["remote"]
    )
    failures = CounterMetricFamily(
        "stcore_sync_failures", "Sync runs to the remote that failed.", labels=["remote"]
    )
    now = time.time()
    for remote in remotes:
        status = remote_status(repository, remote, state, now=now)
        seconds = status["lag_seconds"]
        lag.add_metric([remote.name], float("inf") if seconds is None else seconds)
        pending_snapshots.add_metric([remote.name], status["pending_snapshots"])
        pending_bytes.add_metric([remote.name], status["pending_bytes"])
        failures.add_metric([remote.name], status["failures"])
    return [backups, stored_bytes, running, lag, pending_snapshots, pending_bytes, failures]


def status_document(
    repository: Repository,
    remotes: Iterable[RemoteConfig],
    *,
    provider: str,
    show_paths: bool = False,
) -> dict[str, Any]:
    """``cloud_storage.status()``'s document from the catalog and the daemon state only, with
    locations redacted unless ``show_paths`` (remote and source names, hosts and tags stay)."""
    from cloud_storage_manager import describe_backups
    from stcore.tasks import read_state, remote_status

    remotes = list(remotes)
    known = [repository.location, *(r.url for r in remotes)]
    catalog = repository.catalog
    totals = catalog.totals()
    newest = repository.snapshots(limit=TIMELINE_LIMIT)
    recent = newest[:5]
    location = redact_location(repository.location, show_paths=show_paths)
    statistics = {
        "total_backups": totals["snapshots"],
        "total_size_mb": round(totals["size"] / 1e6, 3),
        "stored_size_mb": round(totals["added_bytes"] / 1e6, 3),
        "cloud_synced": catalog.synced_count(),
        "provider": provider,
        "repository": location,
        "latest_backup": recent[0].id if recent else None,
        "dedup_ratio": (
            round(totals["size"] / totals["added_bytes"], 3) if totals["added_bytes"] else None
        ),
    }
    backups = [{**b, "local_path": location} for b in describe_backups(repository, recent)]
    state = read_state(repository)
    statuses = []
    for remote in remotes:
        status = remote_status(repository, remote, state)
        status["url"] = redact_location(remote.url, show_paths=show_paths)
        if status["last_error"] is not None:
            status["last_error"] = redact_text(status["last_error"], known, show_paths=show_paths)
        statuses.append(status)
    return {
        "success": True,
        "statistics": statistics,
        "recent_backups": backups,
        "remotes": statuses,
        "daemon": _daemon_document(state, known, show_paths=show_paths),
        "timeline": _timeline(repository, newest, totals),
    }


def _daemon_document(
    state: dict[str, Any] | None, known: list[str], *, show_paths: bool
) -> dict[str, Any]:
    """The scheduler as the status shows it: whether it runs, its intervals and next runs while
    it does, and its last backup run (error redacted)."""
    running = bool(state and state["running"])
    last = (state or {}).get("last_runs", {}).get("backup")
    last_backup = None
    if isinstance(last, dict):
        error = last.get("error")
        if error is not None:
            error = redact_text(str(error), known, show_paths=show_paths)
        last_backup = {
            "time": last.get("time"),
            "ok": last.get("ok"),
            "snapshot": last.get("snapshot"),
            "error": error,
        }
    shown = state if running and state else {}
    return {
        "running": running,
        "auto_sync": bool(shown.get("auto_sync")),
        "backup_interval": shown.get("backup_interval"),
        "sync_interval": shown.get("sync_interval"),
        "next_backup": shown.get("next_backup"),
        "next_sync": shown.get("next_sync"),
        "last_backup": last_backup,
    }


def _timeline(
    repository: Repository, newest: list[SnapshotManifest], totals: dict[str, int]
) -> dict[str, Any]:
    """The newest :data:`TIMELINE_LIMIT` snapshots, oldest first, each with the repository's
    stored bytes once it was made (the bytes all snapshots up to it added, per the catalog)."""
    points = list(reversed(newest))
    earlier_added = totals["added_bytes"] - sum(m.added_bytes for m in points)
    synced = repository.catalog.synced_remotes_of(m.id for m in points)
    stored = earlier_added
    snapshots = []
    for manifest in points:
        stored += manifest.added_bytes
        snapshots.append(
            {
                "id": manifest.id,
                "time": manifest.time.astimezone(dt.UTC).isoformat(),
                "host": manifest.host,
                "tags": list(manifest.tags),
                "sources": sorted(manifest.sources),
                "size": manifest.size,
                "added_bytes": manifest.added_bytes,
                "stored_bytes": stored,
                "partial": manifest.partial,
                "synced_to": sorted(synced.get(manifest.id, {})),
            }
        )
    return {
        "snapshots": snapshots,
        "earlier_snapshots": totals["snapshots"] - len(points),
        "earlier_added_bytes": earlier_added,
    }


class _Answers:
    """The blueprint's own repository object and its recent answers, behind one lock: a scrape
    never shares a catalog connection with the application's threads, many requests within
    ``seconds`` cost one computation, and the catalog is brought up to date (one listing of
    ``snapshots/``) at most every ``refresh_seconds``."""

    def __init__(self, facade: CloudStorageManager, seconds: float, refresh_seconds: float) -> None:
        self.facade = facade
        self.seconds = seconds
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._repository: Repository | None = None
        self._refreshed: float | None = None
        self._answers: dict[str, tuple[float, Any]] = {}

    def repository(self, *, catalog: bool = True) -> Repository:
        """The open repository; with ``catalog``, its catalog refreshed if it is due."""
        from stcore.repository import open_repository

        if self._repository is None:  # a missing repository is an error: never created here
            self._repository = open_repository(
                self.facade.repository_url, options=self.facade.settings.backend_options
            )
        repo = self._repository
        if catalog:
            now = time.monotonic()
            if self._refreshed is None:
                self._refreshed = now
                repo.catalog  # noqa: B018 - opening it refreshes it
            elif now - self._refreshed >= self.refresh_seconds:
                self._refreshed = now  # a failed refresh is not retried before it is due
                repo.catalog.refresh(repo.store.snapshot_ids(), repo.store.load_manifest)
        return repo

    def known_locations(self) -> list[str]:
        known = [self._repository.location] if self._repository is not None else []
        try:
            known.append(self.facade.repository_url)
            known += [r.url for r in self.facade.settings.remotes]
        except StcoreError:
            pass
        return known

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._answers.get(key)
            if hit is not None and time.monotonic() < hit[0]:
                return hit[1]
            answer = compute()
            if self.seconds > 0:
                self._answers[key] = (time.monotonic() + self.seconds, answer)
            return answer


def make_blueprint(
    storage: CloudStorageManager | None = None,
    *,
    repo_url: str | None = None,
    config: str | None = None,
    name: str = "stcore",
    allowed_hosts: Iterable[str] = (),
    token: str | None = None,
    show_paths: bool = False,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
) -> Blueprint:
    """The blueprint; ``storage`` is the seed facade to report on (default: a new one for
    ``repo_url`` and ``config``, which follow the usual stcore.toml/environment rules).

    ``allowed_hosts``: ``Host`` names answered besides the loopback ones (403 otherwise).
    ``token``: the bearer token every endpoint needs (``/healthz`` answers only ``{"ok"}``
    without it); None reads ``STCORE_STATUS_TOKEN``, and no token at all means no check.
    ``show_paths``: show local paths, bucket names and URLs instead of ``<redacted>``.
    ``cache_seconds``: how long an answer is reused (0: computed per request, from the catalog).
    ``refresh_seconds``: how often the catalog looks for snapshots it does not know (made on
    another machine, or by a process that had no catalog open): one listing of ``snapshots/``.

    The answers use a repository object of their own, behind their own lock, so a request never
    shares a catalog connection with the application's threads.
    """
    _require_web()
    from flask import Blueprint, Response, jsonify, request
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from cloud_storage_manager import CloudStorageManager
    from stcore.dashboard import content_security_policy, render_dashboard

    hosts = allowed_host_names(allowed_hosts)
    secret = read_token() if token is None else _checked_token(token, "the token")
    expected = secret.encode("ascii") if secret is not None else None
    if cache_seconds < 0 or refresh_seconds < 1:
        raise ValueError("cache_seconds must be >= 0 and refresh_seconds >= 1")
    facade = storage if storage is not None else CloudStorageManager(repo_url, config)
    answers = _Answers(facade, cache_seconds, refresh_seconds)

    def plain(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
        return Response(text + "\n", status=status, mimetype="text/plain", headers=headers)

    def authorized() -> bool:
        if expected is None:
            return True
        given = _bearer(request.headers.get("Authorization"))
        return given is not None and hmac.compare_digest(given, expected)

    def redacted(exc: Exception) -> str:
        return redact_text(str(exc), answers.known_locations(), show_paths=show_paths)

    blueprint = Blueprint(name, __name__)

    @blueprint.before_request
    def guard() -> ResponseReturnValue | None:
        if host_name(request.host) not in hosts:
            return plain(403, "stcore: forbidden: this Host is not allowed (see --allow-host)")
        endpoint = (request.endpoint or "").rpartition(".")[2]
        if endpoint != "healthz" and not authorized():
            challenge = 'Bearer realm="stcore"'
            if request.headers.get("Authorization"):
                challenge += ', error="invalid_token"'
            return plain(401, "stcore: a bearer token is required", {"WWW-Authenticate": challenge})
        return None

    @blueprint.after_request
    def safe_headers(response: Response) -> Response:
        for header, value in SAFE_HEADERS.items():
            response.headers.setdefault(header, value)
        return response

    def status_answer() -> tuple[dict[str, Any], int]:
        try:
            document = status_document(
                answers.repository(),
                facade.settings.remotes,
                provider=facade.provider,
                show_paths=show_paths,
            )
        except StcoreError as exc:
            return {"success": False, "error": redacted(exc)}, 500
        return document, 200

    @blueprint.get("/api/cloud/status")
    def cloud_status() -> ResponseReturnValue:
        document, code = answers.get("status", status_answer)
        return jsonify(document), code

    @blueprint.get("/")
    def dashboard() -> ResponseReturnValue:
        document, code = answers.get("status", status_answer)
        return Response(
            render_dashboard(document),
            status=code,
            mimetype="text/html",
            headers={
                "Content-Security-Policy": content_security_policy(),
                "Referrer-Policy": "no-referrer",
            },
        )

    def health_answer() -> tuple[dict[str, Any], int]:
        try:
            repo = answers.repository(catalog=False)
            location = redact_location(repo.location, show_paths=show_paths)
            return {"ok": True, "repository": location, "id": repo.id}, 200
        except StcoreError as exc:
            return {"ok": False, "error": redacted(exc)}, 503

    @blueprint.get("/healthz")
    def healthz() -> ResponseReturnValue:
        document, code = answers.get("health", health_answer)
        if not authorized():
            document = {"ok": document["ok"]}
        return jsonify(document), code

    def metrics_answer() -> tuple[bytes | str, int]:
        try:
            families = metric_families(answers.repository(), facade.settings.remotes)
        except StcoreError as exc:
            return f"# stcore: error: {' '.join(redacted(exc).split())}\n", 500

        class Collector:
            def collect(self) -> Iterator[Metric]:
                yield from families

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector())
        return generate_latest(registry), 200

    @blueprint.get("/metrics")
    def metrics() -> ResponseReturnValue:
        body, code = answers.get("metrics", metrics_answer)
        if code != 200:
            return Response(body, status=code, mimetype="text/plain")
        return Response(body, content_type=CONTENT_TYPE_LATEST)

    return blueprint


def make_app(
    storage: CloudStorageManager | None = None,
    *,
    repo_url: str | None = None,
    config: str | None = None,
    allowed_hosts: Iterable[str] = (),
    token: str | None = None,
    show_paths: bool = False,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
) -> Flask:
    """A Flask application serving only the blueprint (what ``stcore serve`` runs); the keyword
    arguments are :func:`make_blueprint`'s."""
    _require_web()
    from flask import Flask

    app = Flask("stcore")
    app.register_blueprint(
        make_blueprint(
            storage,
            repo_url=repo_url,
            config=config,
            allowed_hosts=allowed_hosts,
            token=token,
            show_paths=show_paths,
            cache_seconds=cache_seconds,
            refresh_seconds=refresh_seconds,
        )
    )
    return app
