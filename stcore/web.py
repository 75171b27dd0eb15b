"""The status API: a Flask blueprint with the seed's ``/api/cloud/status``, health and metrics.

Mount it in the application (``app.register_blueprint(make_blueprint())``) or run it alone with
``stcore serve``. Flask and prometheus_client are the optional extra ``stcore[web]``; they are
imported only here, and only when a blueprint is made, so the core never needs them.

- ``GET /api/cloud/status``: ``{"success", "statistics", "recent_backups", "remotes"}``, exactly
  what ``cloud_storage.status()`` returns.
- ``GET /healthz``: ``{"ok": true, ...}``, or 503 when the repository cannot be opened.
- ``GET /metrics``: Prometheus text, from a registry made per request (no global state, so two
  blueprints in one process never clash): ``stcore_backups``, ``stcore_stored_bytes``,
  ``stcore_sync_lag_seconds``, ``stcore_sync_pending_snapshots``, ``stcore_sync_pending_bytes``,
  ``stcore_sync_failures_total`` (the last four per remote) and ``stcore_daemon_running``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stcore.errors import StcoreError, WebUnavailableError

if TYPE_CHECKING:
    from flask import Blueprint, Flask
    from prometheus_client.metrics_core import Metric

    from cloud_storage_manager import CloudStorageManager
    from stcore.repository import Repository

INSTALL_HINT = "pip install 'stcore[web]'"


def _require_web() -> None:
    try:
        import flask  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise WebUnavailableError(
            f"the web API needs Flask and prometheus_client ({exc.name} is missing): {INSTALL_HINT}"
        ) from None


def metric_families(repository: Repository, remotes: Any) -> list[Metric]:
    """The metrics for one repository, computed now (bytes stored lists the repository)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from stcore.tasks import read_state, remote_status

    totals = repository.catalog.totals()
    stored = sum(info.size for info in repository.backend.list())
    state = read_state(repository)
    backups = GaugeMetricFamily("stcore_backups", "Snapshots (backups) in the repository.")
    backups.add_metric([], totals["snapshots"])
    stored_bytes = GaugeMetricFamily(
        "stcore_stored_bytes", "Bytes the repository stores (packs, indexes, manifests)."
    )
    stored_bytes.add_metric([], stored)
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


def make_blueprint(
    storage: CloudStorageManager | None = None,
    *,
    repo_url: str | None = None,
    config: str | None = None,
    name: str = "stcore",
) -> Blueprint:
    """The blueprint; ``storage`` is the seed facade to report on (default: a new one for
    ``repo_url`` and ``config``, which follow the usual stcore.toml/environment rules).

    Metrics use a repository object of their own, behind their own lock, so a scrape never
    shares a catalog connection with the application's threads.
    """
    _require_web()
    from flask import Blueprint, Response, jsonify
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from cloud_storage_manager import CloudStorageManager
    from stcore.repository import open_repository

    facade = storage if storage is not None else CloudStorageManager(repo_url, config)
    lock = threading.Lock()
    opened: list[Repository] = []

    def repository() -> Repository:
        if not opened:  # a missing repository is an error here too: never created implicitly
            opened.append(
                open_repository(facade.repository_url, options=facade.settings.backend_options)
            )
        return opened[0]

    blueprint = Blueprint(name, __name__)

    @blueprint.get("/api/cloud/status")
    def cloud_status() -> Any:
        try:
            return jsonify(facade.status())
        except StcoreError as exc:
            return jsonify({"success": False, "error": str(exc)}), 500

    @blueprint.get("/healthz")
    def healthz() -> Any:
        try:
            with lock:
                repo = repository()
                document = {"ok": True, "repository": repo.location, "id": repo.id}
        except StcoreError as exc:
            return jsonify({"ok": False, "error": str(exc)}), 503
        return jsonify(document)

    @blueprint.get("/metrics")
    def metrics() -> Any:
        try:
            with lock:
                families = metric_families(repository(), facade.settings.remotes)
        except StcoreError as exc:
            return Response(f"# stcore: error: {exc}\n", status=500, mimetype="text/plain")

        class Collector:
            def collect(self) -> Iterator[Metric]:
                yield from families

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector())
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return blueprint


def make_app(
    storage: CloudStorageManager | None = None,
    *,
    repo_url: str | None = None,
    config: str | None = None,
) -> Flask:
    """A Flask application serving only the blueprint (what ``stcore serve`` runs)."""
    _require_web()
    from flask import Flask

    app = Flask("stcore")
    app.register_blueprint(make_blueprint(storage, repo_url=repo_url, config=config))
    return app
