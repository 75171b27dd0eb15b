"""`stcore status`, the Flask status API and its Prometheus metrics, and `stcore serve`."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families

import stcore
from cloud_storage_manager import CloudStorageManager
from stcore.config import RemoteConfig, load_settings
from stcore.daemon import AutoSync, RunRecord
from stcore.errors import StcoreError
from tests.conftest import run_cli

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


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Two snapshots; the first synced to ``mirror``, a failed sync to ``gone``."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.json").write_text('{"a": 1}')
    (tmp_path / "mirror").mkdir()
    (tmp_path / "stcore.toml").write_text(TOML)
    settings = load_settings(tmp_path / "stcore.toml")
    assert settings.repository is not None
    with stcore.init_repository(settings.repository) as repo:
        source = stcore.make_source("data", "files", {"path": str(tmp_path / "data")})
        repo.backup([source])
        repo.sync(settings.remote("mirror"))
        (tmp_path / "data" / "b.json").write_text('{"b": 2}')
        repo.backup([stcore.make_source("data", "files", {"path": str(tmp_path / "data")})])
        with pytest.raises(StcoreError, match="does not exist"):
            repo.sync(settings.remote("gone"))
    return tmp_path


def _by_name(remotes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in remotes}


def test_status_json_shows_last_sync_pending_last_error_and_next_run(project: Path) -> None:
    settings = load_settings(project / "stcore.toml")
    ran = threading.Event()

    def on_run(record: RunRecord) -> None:
        ran.set()

    # A scheduler that syncs hourly (to `gone` only, so `mirror` keeps one pending snapshot):
    # its first sync fails at once, and its next one is an hour away.
    daemon_settings = attrs.evolve(settings, configured_remotes=(settings.remote("gone"),))
    with AutoSync(settings=daemon_settings, sync_interval=3600, on_run=on_run):
        assert ran.wait(10)
        result = run_cli("status", "--json", cwd=project)
        assert result.returncode == 0, result.stderr
        human = run_cli("status", cwd=project)
    document = json.loads(result.stdout)
    assert document["snapshots"] == 2 and document["daemon"]["running"] is True
    remotes = _by_name(document["remotes"])
    mirror, gone = remotes["mirror"], remotes["gone"]
    assert mirror["last_sync"] is not None and mirror["last_error"] is None
    assert mirror["pending_snapshots"] == 1 and mirror["pending_bytes"] > 0
    assert gone["last_sync"] is None
    assert gone["pending_snapshots"] == 2 and gone["pending_bytes"] > mirror["pending_bytes"]
    assert "does not exist" in gone["last_error"] and gone["last_error_at"] is not None
    assert gone["failures"] == 2  # the fixture's and the daemon's
    next_sync = document["daemon"]["next_sync"]
    assert next_sync is not None and gone["next_run"] == mirror["next_run"] == next_sync
    assert 3500 < dt.datetime.fromisoformat(next_sync).timestamp() - time.time() <= 3600
    assert "last error" in human.stdout and "does not exist" in human.stdout

    stopped = json.loads(run_cli("status", "--json", cwd=project).stdout)
    assert stopped["daemon"]["running"] is False
    assert all(r["next_run"] is None for r in stopped["remotes"])


def _metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {
            tuple(sorted(sample.labels.items())): sample.value for sample in family.samples
        }
    return families


def test_flask_blueprint_serves_status_health_and_metrics(project: Path) -> None:
    from stcore.web import make_app

    storage = CloudStorageManager(config=str(project / "stcore.toml"))
    storage.init_repository()  # the facade never creates one itself
    client = make_app(storage).test_client()

    status = client.get("/api/cloud/status")
    assert status.status_code == 200
    body = status.get_json()
    assert body["success"] is True
    statistics = body["statistics"]
    assert set(statistics) >= {"total_backups", "total_size_mb", "cloud_synced", "provider"}
    assert statistics["total_backups"] == 2 and statistics["cloud_synced"] == 1
    assert statistics["provider"] == "local"
    assert [b["cloud_synced"] for b in body["recent_backups"]] == [False, True]
    remotes = _by_name(body["remotes"])
    assert remotes["mirror"]["pending_snapshots"] == 1 and remotes["gone"]["failures"] == 1

    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["ok"] is True

    scrape = client.get("/metrics")
    assert scrape.status_code == 200 and scrape.content_type.startswith("text/plain")
    metrics = _metrics(scrape.get_data(as_text=True))
    assert metrics["stcore_backups"][()] == 2
    assert metrics["stcore_stored_bytes"][()] > 0
    assert metrics["stcore_daemon_running"][()] == 0
    mirror, gone = (("remote", "mirror"),), (("remote", "gone"),)
    assert 0 <= metrics["stcore_sync_lag_seconds"][mirror] < 60
    assert metrics["stcore_sync_lag_seconds"][gone] == float("inf")  # never synced
    assert metrics["stcore_sync_pending_snapshots"] == {mirror: 1, gone: 2}
    assert metrics["stcore_sync_pending_bytes"][gone] > metrics["stcore_sync_pending_bytes"][mirror]
    assert metrics["stcore_sync_failures"] == {mirror: 0, gone: 1}  # exposed with _total

    # No global registry: a second app in the same process serves the same metrics.
    again = make_app(storage).test_client().get("/metrics").get_data(as_text=True)
    assert _metrics(again)["stcore_backups"][()] == 2
    storage.close()


def test_status_api_reports_errors_as_json(tmp_path: Path) -> None:
    from stcore.web import make_app

    client = make_app(CloudStorageManager(repository="nosuch://bucket/x")).test_client()
    for path in ("/api/cloud/status", "/healthz"):
        response = client.get(path)
        assert response.status_code >= 500
        assert response.get_json()["success" if "api" in path else "ok"] is False


def test_the_status_server_never_creates_a_missing_repository(tmp_path: Path) -> None:
    from stcore.web import make_app

    missing = tmp_path / "unmounted-disk" / "repo"
    client = make_app(CloudStorageManager(repository=str(missing))).test_client()
    for path in ("/api/cloud/status", "/healthz", "/metrics"):
        response = client.get(path)
        assert response.status_code >= 500
    assert not missing.exists() and not missing.parent.exists()


def test_without_the_web_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stcore import web

    monkeypatch.setitem(sys.modules, "flask", None)  # makes `import flask` fail
    with pytest.raises(web.WebUnavailableError, match=r"pip install 'stcore\[web\]'"):
        web.make_blueprint()


def test_core_imports_do_not_need_flask() -> None:
    code = (
        "import sys; sys.modules['flask'] = None; sys.modules['prometheus_client'] = None; "
        "import stcore.cli, stcore.daemon, stcore.web, cloud_storage_manager; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_stcore_serve_answers_on_loopback_and_stops_on_sigterm(project: Path) -> None:
    log = project / "serve.log"
    with open(log, "w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "stcore.cli", "serve", "--port", "0"],
            cwd=project,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 15
        while "serving on" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "stcore serve did not start"
            time.sleep(0.05)
        url = log.read_text().split("serving on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy

        def get(path: str) -> tuple[int, str, str]:
            with opener.open(url + path, timeout=10) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()

        code, kind, text = get("/api/cloud/status")
        assert code == 200 and kind == "application/json"
        body = json.loads(text)
        assert body["success"] is True and body["statistics"]["total_backups"] == 2
        assert body["statistics"]["cloud_synced"] == 1 and len(body["recent_backups"]) == 2
        assert json.loads(get("/healthz")[2])["ok"] is True
        metrics = _metrics(get("/metrics")[2])
        assert metrics["stcore_sync_pending_snapshots"][(("remote", "mirror"),)] == 1
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_facade_status_counts_synced_backups_and_lists_remotes(project: Path) -> None:
    storage = CloudStorageManager(config=str(project / "stcore.toml"))
    storage.init_repository()  # the facade never creates one itself
    assert storage.get_statistics()["cloud_synced"] == 1
    status = storage.status()
    assert set(status) == {"success", "statistics", "recent_backups", "remotes"}
    assert [r["name"] for r in status["remotes"]] == ["mirror", "gone"]
    storage.close()


def test_remote_status_of_a_remote_never_synced_to(tmp_path: Path) -> None:
    from stcore.tasks import remote_status

    with stcore.init_repository(str(tmp_path / "repo")) as repo:
        status = remote_status(repo, RemoteConfig(name="cloud", url=str(tmp_path / "c")))
    assert status["last_sync"] is None and status["lag_seconds"] is None
    assert status["pending_snapshots"] == 0 and status["failures"] == 0
    assert status["next_run"] is None
