"""`stcore status`, the Flask status API and its Prometheus metrics, and `stcore serve`."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def stcore_serve(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real `stcore serve --port 0 ARGS` in ``project``; yields it and its URL."""
    log = project / "serve.log"
    environment = {k: v for k, v in os.environ.items() if k != "STCORE_STATUS_TOKEN"}
    with open(log, "w") as stderr:
        server = subprocess.Popen(
            # faulthandler: a server that does not stop dumps its threads on SIGABRT (below)
            [
                sys.executable,
                "-X",
                "faulthandler",
                "-m",
                "stcore.cli",
                "serve",
                "--port",
                "0",
                *args,
            ],
            cwd=project,
            env={**environment, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while "serving on" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "stcore serve did not start"
            time.sleep(0.05)
        yield server, log.read_text().split("serving on ", 1)[1].split()[0]
    finally:
        if server.poll() is None:  # still running: show where each of its threads stands
            server.send_signal(signal.SIGABRT)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            print(f"stcore serve was still running at the end; its log:\n{log.read_text()[-6000:]}")


def test_stcore_serve_answers_on_loopback_and_stops_on_sigterm(project: Path) -> None:
    with stcore_serve(project) as (server, url):
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
        assert server.wait(timeout=60) == 0  # generous: a loaded machine is slow, not wrong


def test_stcore_serve_exits_0_when_stop_signals_keep_coming(project: Path) -> None:
    """`timeout` sends SIGTERM to the process and again to its group: a signal that lands
    while the server shuts down must not end it with 143."""
    with stcore_serve(project) as (server, _):
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            server.send_signal(signal.SIGTERM)
            time.sleep(0.002)
        assert server.wait(timeout=60) == 0


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


# --- `stcore serve` safe to run: Host names, tokens, redaction, no listing per request ----------

PATHS = ("/api/cloud/status", "/healthz", "/metrics")
TOKEN = "k7Qz-status-token-0123456789abcdef"


@contextmanager
def serving(app: Any) -> Iterator[int]:
    """``app`` on a real HTTP server on 127.0.0.1 (a thread of this process); yields its port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _request(
    port: int, path: str, *, host: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET over a real connection, with the ``Host`` header we choose (as a browser would send
    after a DNS rebinding)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "GET", path, headers={"Host": host or f"127.0.0.1:{port}", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, dict(response.headers.items()), response.read()
    finally:
        connection.close()


def _app(project: Path, **options: Any) -> Any:
    from stcore.web import make_app

    return make_app(config=str(project / "stcore.toml"), **options)


def test_a_foreign_host_is_refused_and_loopback_names_are_answered(project: Path) -> None:
    with serving(_app(project)) as port:
        for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example",
                     "127.0.0.1.nip.io", "0.0.0.0", "[::2]", "bad host", "10.0.0.7"):  # fmt: skip
            for path in PATHS:
                code, headers, body = _request(port, path, host=host)
                assert code == 403, (host, path)
                assert headers["Content-Type"].startswith("text/plain")
                assert len(body) < 100 and b"stcore" in body and b"{" not in body
        for host in ("localhost", f"localhost:{port}", "LOCALHOST", "127.0.0.1", f"[::1]:{port}"):
            for path in PATHS:
                assert _request(port, path, host=host)[0] == 200, (host, path)
    with serving(_app(project, allowed_hosts=["backup.lan", "10.0.0.7"])) as port:
        for host in ("backup.lan:8765", "Backup.LAN", "10.0.0.7", "localhost"):
            assert _request(port, "/api/cloud/status", host=host)[0] == 200, host
        assert _request(port, "/api/cloud/status", host="other.lan")[0] == 403
    with pytest.raises(ValueError, match="not a host name"):
        _app(project, allowed_hosts=["evil.example/path"])


def test_with_a_token_every_endpoint_but_healthz_needs_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STCORE_STATUS_TOKEN", raising=False)
    with serving(_app(project, token=TOKEN)) as port:
        for path in ("/api/cloud/status", "/metrics"):
            code, headers, body = _request(port, path)  # missing
            assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer")
            assert "invalid_token" not in headers["WWW-Authenticate"]
            assert TOKEN.encode() not in body
            for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN,
                          "Bearer", f"Bearer {TOKEN.upper()}"):  # fmt: skip
                code, headers, _ = _request(port, path, headers={"Authorization": wrong})
                assert code == 401, wrong
                assert headers["WWW-Authenticate"].startswith("Bearer")
            for right in (f"Bearer {TOKEN}", f"bearer  {TOKEN} "):
                assert _request(port, path, headers={"Authorization": right})[0] == 200
        # /healthz answers probes without the token, but says only whether it is ok
        code, _, body = _request(port, "/healthz")
        assert code == 200 and json.loads(body) == {"ok": True}
        code, _, body = _request(port, "/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
        assert code == 200 and set(json.loads(body)) == {"ok", "repository", "id"}
        # the Host check comes first, token or not
        code, _, _ = _request(
            port, "/metrics", host="evil.example", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert code == 403

    monkeypatch.setenv("STCORE_STATUS_TOKEN", TOKEN)  # read when no token is passed
    with serving(_app(project)) as port:
        assert _request(port, "/api/cloud/status")[0] == 401
        assert _request(port, "/api/cloud/status", headers={"Authorization": f"Bearer {TOKEN}"})[
            0
        ] == 200  # fmt: skip


def test_stcore_serve_checks_host_and_token_from_a_token_file(project: Path) -> None:
    token_file = project / "status.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    with stcore_serve(project, "--token-file", str(token_file), "--allow-host", "backup.lan") as (
        server,
        url,
    ):
        assert "bearer token required" in (project / "serve.log").read_text()
        port = int(url.rsplit(":", 1)[1])
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert _request(port, "/api/cloud/status", host="evil.example", headers=bearer)[0] == 403
        assert _request(port, "/api/cloud/status", host="backup.lan:80", headers=bearer)[0] == 200
        code, headers, _ = _request(port, "/api/cloud/status")
        assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        wrong = {"Authorization": "Bearer nope"}
        assert _request(port, "/metrics", headers=wrong)[0] == 401
        code, _, body = _request(port, "/api/cloud/status", headers=bearer)
        assert code == 200 and json.loads(body)["statistics"]["total_backups"] == 2
        assert json.loads(_request(port, "/healthz")[2]) == {"ok": True}
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0  # generous: a loaded machine is slow, not wrong


def _serve_refused(project: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    environment = {k: v for k, v in os.environ.items() if k != "STCORE_STATUS_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "stcore.cli", "serve", "--port", "0", *args],
        cwd=project,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,  # it must refuse, not serve
    )


def test_listening_beyond_loopback_without_a_token_is_refused_in_one_line(project: Path) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10", "backup.lan"):
        result = _serve_refused(project, "--host", host)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"stcore: error: --host {host} needs --token-file")
        assert "STCORE_STATUS_TOKEN" in result.stderr and len(result.stderr) <= 81
        assert "serving on" not in result.stdout + result.stderr
    (project / "empty.token").write_text("\n")
    (project / "binary.token").write_bytes(b"\xff\xfe\x00token\n")
    for args, env in [
        (("--token-file", str(project / "empty.token")), None),
        (("--token-file", str(project / "binary.token")), None),
        (("--token-file", str(project / "missing.token")), None),
        ((), {"STCORE_STATUS_TOKEN": "  "}),
        ((), {"STCORE_STATUS_TOKEN": "two words"}),
    ]:
        result = _serve_refused(project, "--host", "0.0.0.0", *args, env=env)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "token" in result.stderr
    result = _serve_refused(project, "--allow-host", "a b")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


def test_status_redacts_paths_buckets_and_secrets_unless_asked(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUD_PROVIDER", "aws")  # the seed's remote: s3://acme-private-bkt/stcore
    monkeypatch.setenv("AWS_S3_BUCKET", "acme-private-bkt")
    secrets = (str(project), "acme-private-bkt", "/gone", "/mirror", "/repo")
    with serving(_app(project)) as port:
        texts = {path: _request(port, path)[2].decode() for path in PATHS}
        for path, text in texts.items():
            for secret in secrets:
                assert secret not in text, (path, secret)
        status = json.loads(texts["/api/cloud/status"])
        remotes = _by_name(status["remotes"])
        assert remotes["mirror"]["url"] == "<redacted>"
        assert remotes["aws"]["url"] == "s3://<redacted>"
        assert "does not exist" in remotes["gone"]["last_error"]  # the reason stays
        assert "<redacted>" in remotes["gone"]["last_error"]
        assert status["statistics"]["repository"] == "<redacted>"
        assert {b["local_path"] for b in status["recent_backups"]} == {"<redacted>"}
        # names, hosts and tags are not locations: they stay
        assert {b["host"] for b in status["recent_backups"]} != {"<redacted>"}
        assert json.loads(texts["/healthz"])["repository"] == "<redacted>"
        assert ("remote", "aws") in {
            label for family in _metrics(texts["/metrics"]).values() for key in family
            for label in key
        }  # fmt: skip

    with serving(_app(project, show_paths=True)) as port:
        status = json.loads(_request(port, "/api/cloud/status")[2])
        remotes = _by_name(status["remotes"])
        assert remotes["aws"]["url"] == "s3://acme-private-bkt/stcore"
        assert remotes["mirror"]["url"].endswith("mirror")
        assert str(project) in status["statistics"]["repository"]
        assert str(project) in remotes["gone"]["last_error"]
        health = json.loads(_request(port, "/healthz")[2])
        assert health["repository"] == status["statistics"]["repository"]


def test_redaction_of_free_text() -> None:
    from stcore.web import redact_location, redact_text

    message = (
        "cannot reach https://minio.internal:9000/acme-bkt?X-Amz-Signature=abc123 for "
        "/home/alice/Backups/repo (C:\\Users\\alice\\repo); bucket acme-bkt: password=hunter2, "
        "AccountKey=c2VjcmV0; key AKIAABCDEFGHIJKLMNOP, ~/keys/id. Retry later."
    )
    hidden = redact_text(message, ["s3://acme-bkt/stcore"])
    for secret in ("minio.internal", "acme-bkt", "alice", "hunter2", "c2VjcmV0", "AKIA", "abc123",
                   "~/keys"):  # fmt: skip
        assert secret not in hidden, secret
    assert hidden.startswith("cannot reach https://<redacted> for <redacted> (<redacted>);")
    assert hidden.endswith("Retry later.")
    shown = redact_text(message, ["s3://acme-bkt/stcore"], show_paths=True)
    assert "/home/alice/Backups/repo" in shown and "https://minio.internal:9000/acme-bkt" in shown
    for secret in ("hunter2", "c2VjcmV0", "AKIAABCDEFGHIJKLMNOP", "abc123"):  # always hidden
        assert secret not in shown, secret
    assert redact_location("s3://bkt/p") == "s3://<redacted>"
    assert redact_location("/srv/backups") == "<redacted>"
    assert redact_location("s3://user:pw@bkt/p", show_paths=True) == "s3://<redacted>@bkt/p"


def test_status_and_metrics_never_list_the_backend_per_request(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from st_local.backend import LocalBackend

    calls: list[str] = []
    original = LocalBackend.list

    def counting_list(self: LocalBackend, prefix: str = "") -> Iterator[Any]:
        calls.append(prefix)
        return original(self, prefix)

    monkeypatch.setattr(LocalBackend, "list", counting_list)
    rounds = 40
    for cache_seconds in (0.0, 5.0):  # the catalog answers; the cache only spares it work
        with serving(_app(project, cache_seconds=cache_seconds)) as port:
            for path in PATHS:  # warm up: the repository and its catalog are opened once
                assert _request(port, path)[0] == 200
            after_warm_up = len(calls)
            # opening looks at keys/, the catalog at snapshots/; nothing lists everything
            assert after_warm_up <= 3 and all(calls), calls
            for _ in range(rounds):
                for path in PATHS:
                    assert _request(port, path)[0] == 200
            assert len(calls) == after_warm_up, calls[after_warm_up:]
        calls.clear()


def test_new_snapshots_show_within_the_refresh_interval_and_cache(project: Path) -> None:
    def total(port: int) -> int:
        body = json.loads(_request(port, "/api/cloud/status")[2])
        return int(body["statistics"]["total_backups"])

    with (
        serving(_app(project, cache_seconds=0, refresh_seconds=1)) as fresh,
        serving(_app(project, cache_seconds=60)) as cached,
    ):
        assert total(fresh) == total(cached) == 2
        result = run_cli("backup", cwd=project)  # another process, its catalog not open
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 10
        while total(fresh) != 3:
            assert time.monotonic() < deadline, "the new snapshot never showed"
            time.sleep(0.2)
        assert total(cached) == 2  # the same answer for a minute


def test_markup_and_control_characters_in_repository_text_are_returned_as_json_data(
    project: Path,
) -> None:
    tag = '<script>alert("x")</script> [bold red]\x1b[2J\x07\u202e</b>&amp;'
    with stcore.open_repository(str(project / "repo")) as repo:
        repo.catalog  # noqa: B018 - so that the backup is recorded in it
        repo.backup([stcore.make_source("data", "files", {"path": str(project / "data")})],
                    tags=[tag])  # fmt: skip
    with serving(_app(project, cache_seconds=0)) as port:
        code, headers, body = _request(port, "/api/cloud/status")
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b"\x1b" not in body and b"\x07" not in body  # escaped as \\u001b, \\u0007
    recent = json.loads(body)["recent_backups"]
    assert recent[0]["tags"] == [tag]  # exactly the text, as data
