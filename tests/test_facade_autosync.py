"""CLOUD_AUTO_SYNC in the application's own process: the seed facade's in-app scheduler.

In process: one scheduler per process however many facade objects and threads, shown by
``status()``, stopped by ``close()``/``stop_auto_sync()``, a run another process is making
skipped (not failed), configuration errors shown instead of raised. As subprocesses, the way an
application runs it: an app with ``CLOUD_AUTO_SYNC=true`` in ``.env`` syncs on its own and exits
promptly; two at once, or one beside a ``stcore daemon``, do not double or break anything.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cloud_storage_manager
import stcore
from cloud_storage_manager import CloudStorageManager
from stcore.localfiles import FileLock
from stcore.tasks import ABANDONED
from tests.conftest import run_cli

THREAD = "stcore-autosync"


def _write_app(root: Path) -> Path:
    """An app folder: data, an empty local-path remote, stcore.toml, an initialised repo."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "ai_hub.json").write_text(json.dumps({"signals": [1, 2, 3]}))
    (root / "mirror").mkdir()
    (root / "stcore.toml").write_text(
        '[repository]\nurl = "repo"\n\n'
        '[sources.ai_hub]\ntype = "json"\npath = "data/ai_hub.json"\n\n'
        '[remotes.mirror]\nurl = "mirror"\n'
    )
    init = run_cli("init", cwd=root)
    assert init.returncode == 0, init.stderr
    return root


def _schedulers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD and t.is_alive()]


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def _last_sync(storage: CloudStorageManager) -> dict[str, Any] | None:
    run: dict[str, Any] | None = storage.auto_sync_status()["last_runs"].get("sync:mirror")
    return run


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The app folder as the current directory, CLOUD_AUTO_SYNC on with a short interval; no
    scheduler is left running afterwards."""
    root = _write_app(tmp_path / "app")
    monkeypatch.chdir(root)
    monkeypatch.setenv("CLOUD_AUTO_SYNC", "true")
    monkeypatch.setenv("CLOUD_SYNC_INTERVAL", "0.2")
    assert _schedulers() == []
    yield root
    assert cloud_storage_manager._stop_process_auto_sync(30)
    assert _wait_for(lambda: not _schedulers(), "the scheduler thread to end")


# --- in process ----------------------------------------------------------------------------------


def test_one_scheduler_per_process_however_many_objects_and_threads(app: Path) -> None:
    managers = [CloudStorageManager() for _ in range(4)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def use(storage: CloudStorageManager) -> None:
        try:
            barrier.wait()
            storage.list_backups()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=use, args=(managers[i % 4],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(_schedulers()) == 1
    assert sum(m._auto_owner for m in managers) == 1
    for storage in managers:
        status = storage.status()["auto_sync"]
        assert status["enabled"] and status["running"]
        assert status["sync_interval"] == 0.2
        assert status["repository"] in (str(app / "repo"), storage.repository.location)
    # another object opening the repository later starts none either
    late = CloudStorageManager()
    late.get_statistics()
    assert len(_schedulers()) == 1
    for storage in [*managers, late]:
        storage.close()
    assert _wait_for(lambda: not _schedulers(), "close() of the owner to stop it")


def test_backups_are_synced_on_their_own_and_status_shows_the_schedule(app: Path) -> None:
    storage = CloudStorageManager()
    backup = storage.backup_all_data()
    assert backup["success"] is True
    _wait_for(lambda: storage.list_backups(1)[0]["cloud_synced"], "the backup to be synced")
    status = storage.status()
    assert status["auto_sync"]["running"] is True and status["auto_sync"]["error"] is None
    assert status["auto_sync"]["next_sync"] is not None
    assert status["remotes"][0]["next_run"] is not None  # the in-app schedule
    run = _wait_for(lambda: _last_sync(storage), "a run to be reported")
    assert run["ok"] is True and run["error"] is None
    with stcore.open_repository(str(app / "mirror")) as mirror:
        assert [m.id for m in mirror.snapshots()] == [backup["backup_id"]]
        assert mirror.check().ok
    storage.close()
    assert _wait_for(lambda: not _schedulers(), "close() to stop the scheduler")
    assert CloudStorageManager(auto_sync=False).auto_sync_status()["running"] is False


def test_stop_auto_sync_stops_it_for_good_from_that_object(app: Path) -> None:
    storage = CloudStorageManager()
    storage.list_backups()
    assert len(_schedulers()) == 1
    assert storage.stop_auto_sync(timeout=30) is True
    assert _schedulers() == []
    storage.close()
    storage.list_backups()  # reopened: still stopped
    assert _schedulers() == []
    assert storage.auto_sync_status()["enabled"] is False
    assert "auto_sync" not in storage.status()
    storage.close()


def test_nothing_starts_without_the_switch_or_with_auto_sync_false(
    app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opted_out = CloudStorageManager(auto_sync=False)
    opted_out.backup_all_data()
    assert _schedulers() == []
    opted_out.close()
    for value in ("false", "0", "off", ""):
        monkeypatch.setenv("CLOUD_AUTO_SYNC", value)
        storage = CloudStorageManager()
        storage.backup_all_data()
        assert _schedulers() == []
        assert "auto_sync" not in storage.status()  # the seed's shape, as it was
        storage.close()
    monkeypatch.setenv("CLOUD_AUTO_SYNC", "false")
    forced = CloudStorageManager(auto_sync=True)
    forced.list_backups()
    assert len(_schedulers()) == 1
    forced.close()


def test_a_run_another_process_is_making_is_skipped_not_failed(app: Path) -> None:
    from stcore.tasks import remote_status

    storage = CloudStorageManager(auto_sync=False)
    storage.backup_all_data()
    cache_dir = storage.repository.cache_dir
    held = FileLock(cache_dir / "runs.lock")  # another process's backup or sync
    assert held.acquire(0)
    try:
        scheduled = CloudStorageManager()
        scheduled.list_backups()
        run = _wait_for(lambda: _last_sync(scheduled), "a skipped run")
        assert run["ok"] is True and run["error"] is None
        assert run["skipped"] == "another backup or sync of this repository is running"
        assert storage.list_backups(1)[0]["cloud_synced"] is False
    finally:
        held.release()
    _wait_for(lambda: storage.list_backups(1)[0]["cloud_synced"], "the next run to sync")
    mirror = storage.settings.remote("mirror")
    status = remote_status(storage.repository, mirror)
    assert status["failures"] == 0 and status["last_error"] is None  # skips are not failures
    storage.close()
    scheduled.close()


def test_a_stcore_daemon_that_syncs_makes_the_apps_runs_skip(app: Path) -> None:
    storage = CloudStorageManager(auto_sync=False)
    storage.backup_all_data()
    cache_dir = storage.repository.cache_dir
    daemon_lock = FileLock(cache_dir / "daemon.lock")
    assert daemon_lock.acquire(0)
    state: dict[str, Any] = {
        "pid": 4242,
        "auto_sync": True,
        "backup_interval": None,
        "last_runs": {},
    }
    (cache_dir / "daemon.json").write_text(json.dumps(state))
    try:
        scheduled = CloudStorageManager()
        scheduled.list_backups()
        run = _wait_for(lambda: _last_sync(scheduled), "a skipped run")
        assert run["ok"] is True
        assert run["skipped"] == "stcore daemon (pid 4242) makes this repository's syncs"
        assert storage.list_backups(1)[0]["cloud_synced"] is False
        # a daemon that only backs up leaves the syncs to the app
        (cache_dir / "daemon.json").write_text(json.dumps({**state, "auto_sync": False}))
        _wait_for(lambda: storage.list_backups(1)[0]["cloud_synced"], "the app to sync")
    finally:
        daemon_lock.release()
    storage.close()
    scheduled.close()


def test_sync_to_cloud_waits_for_the_schedulers_run_instead_of_failing(app: Path) -> None:
    os.environ["CLOUD_SYNC_INTERVAL"] = "0.01"  # the fixture's monkeypatch puts it back
    storage = CloudStorageManager()
    for _ in range(50):  # without the wait, about one in four collided
        assert storage.backup_all_data()["success"] is True
        result = storage.sync_to_cloud()
        assert result["success"] is True, result["error"]
    assert all(b["cloud_synced"] for b in storage.list_backups(None))
    storage.close()


def test_a_configuration_error_is_shown_and_logged_not_raised(
    app: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (app / "stcore.toml").write_text(
        '[repository]\nurl = "repo"\n[sources.ai_hub]\ntype = "json"\npath = "data/ai_hub.json"\n'
    )
    with caplog.at_level(logging.WARNING, logger="cloud_storage_manager"):
        storage = CloudStorageManager()
        assert storage.backup_all_data()["success"] is True  # the app's own calls still work
        storage.list_backups()
    assert _schedulers() == []
    status = storage.status()
    assert status["success"] is True
    assert "no remote is configured" in status["auto_sync"]["error"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "cloud_storage_manager"]
    assert len(warnings) == 1 and "CLOUD_AUTO_SYNC" in warnings[0]
    storage.close()
    monkeypatch.setenv("CLOUD_SYNC_INTERVAL", "hourly")
    storage = CloudStorageManager()
    storage.list_backups()
    assert "CLOUD_SYNC_INTERVAL" in storage.status()["auto_sync"]["error"]
    assert _schedulers() == []
    storage.close()


def test_a_repository_the_scheduler_cannot_open_is_a_failed_run_and_it_goes_on(
    tmp_path: Path,
) -> None:
    from stcore.config import RemoteConfig, Settings
    from stcore.daemon import AutoSync, RunRecord

    (tmp_path / "mirror").mkdir()
    settings = Settings(
        configured_remotes=(RemoteConfig(name="mirror", url=str(tmp_path / "mirror")),)
    )
    records: list[RunRecord] = []
    auto = AutoSync(
        str(tmp_path / "unmounted"),
        settings,
        sync_interval=0.05,
        on_run=records.append,
        exclusive=False,
    ).start()
    try:
        _wait_for(lambda: len(records) >= 2, "two runs")
        assert auto.running and auto.error is None  # it goes on, to try again
    finally:
        assert auto.stop(30)
    assert {(r.event, r.remote, r.ok, r.skipped) for r in records} == {
        ("sync", "mirror", False, None)
    }
    assert all("unmounted" in (r.error or "") for r in records)
    assert not (tmp_path / "unmounted").exists()


def test_importing_the_facade_starts_nothing(app: Path) -> None:
    code = (
        "import threading, cloud_storage_manager\n"
        "assert [t.name for t in threading.enumerate()] == ['MainThread'], threading.enumerate()\n"
        "assert cloud_storage_manager._auto is None\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=app, capture_output=True, text=True, timeout=120
    )
    assert result.stdout == "ok\n", result.stderr


# --- as an application runs it -------------------------------------------------------------------

APP = """
import json, sys, time
from cloud_storage_manager import cloud_storage

backup = cloud_storage.backup_all_data()
assert backup["success"], backup
deadline = time.monotonic() + 60
while not cloud_storage.get_backup(backup["backup_id"])["cloud_synced"]:
    assert time.monotonic() < deadline, "not synced within 60 s"
    time.sleep(0.05)
status = cloud_storage.status()
print(json.dumps({"backup": backup["backup_id"], "auto_sync": status["auto_sync"]}), flush=True)
"""


def _start_app(root: Path, script: str = APP) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[dict[str, Any], float]:
    """The app's report, and the seconds between the end of its script and its exit."""
    assert process.stdout is not None
    line = process.stdout.readline()
    printed = time.monotonic()
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    exited = time.monotonic()
    stderr = process.stderr.read() if process.stderr else ""
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    return json.loads(line), exited - printed


def _env_file(root: Path, interval: str = "1") -> None:
    (root / ".env").write_text(f"CLOUD_AUTO_SYNC=true\nCLOUD_SYNC_INTERVAL={interval}\n")


def _mirror_ids(root: Path) -> list[str]:
    with stcore.open_repository(str(root / "mirror")) as mirror:
        assert mirror.check(read_data=True).ok
        return sorted(m.id for m in mirror.snapshots())


def _sync_failures(root: Path) -> int:
    from stcore.config import RemoteConfig
    from stcore.tasks import remote_status

    with stcore.open_repository(str(root / "repo")) as repo:
        status = remote_status(repo, RemoteConfig(name="mirror", url=str(root / "mirror")))
    failures: int = status["failures"]
    return failures


@pytest.mark.slow
def test_an_app_syncs_on_its_own_with_nothing_else_running_and_exits_promptly(
    tmp_path: Path,
) -> None:
    root = _write_app(tmp_path / "app")
    _env_file(root)
    report, exit_seconds = _finish(_start_app(root))
    assert report["auto_sync"]["running"] is True and report["auto_sync"]["sync_interval"] == 1
    assert report["auto_sync"]["last_runs"]["sync:mirror"]["ok"] is True
    assert exit_seconds < 5
    assert _mirror_ids(root) == [report["backup"]]
    assert _sync_failures(root) == 0


SLOW_SYNC = """
import json, os, time
import st_local.backend as local
from cloud_storage_manager import CloudStorageManager, cloud_storage

maker = CloudStorageManager(auto_sync=False)  # 24 backups, so 24 packs to upload
for number in range(24):
    with open("data/ai_hub.json", "w") as document:
        json.dump({"number": number, "noise": os.urandom(8).hex()}, document)
    assert maker.backup_all_data()["success"]
maker.close()
original = local.LocalBackend.write

def slow(self, key, data):  # a slow uplink: each pack takes 2 s to reach the remote
    if self.root.name == "mirror" and key.startswith("data/"):
        time.sleep(2)
    return original(self, key, data)

local.LocalBackend.write = slow
cloud_storage.list_backups()  # opens the repository: the first sync starts at once
while not any(files for _, _, files in os.walk("mirror/data")):
    time.sleep(0.01)
print("ended", flush=True)  # with 20 packs still to upload
"""


@pytest.mark.slow
def test_an_app_that_ends_in_the_middle_of_a_sync_exits_without_finishing_it(
    tmp_path: Path,
) -> None:
    """The script ends while its scheduler uploads: the exit waits for the uploads in progress
    (four at once), not for the twenty queued behind them, and the sync is recorded as
    abandoned, not failed; the remote holds only complete snapshots."""
    root = _write_app(tmp_path / "app")
    _env_file(root, interval="3600")
    process = _start_app(root, SLOW_SYNC)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == "ended\n", process.stderr.read()
    printed = time.monotonic()
    assert process.wait(timeout=120) == 0, process.stderr.read()
    assert time.monotonic() - printed < 6, "the exit waited for the queued uploads"
    assert "Traceback" not in process.stderr.read()
    uploaded = [f for _, _, files in os.walk(root / "mirror" / "data") for f in files]
    assert 0 < len(uploaded) < 24
    assert _mirror_ids(root) == []  # no manifest without its data: check passes
    with stcore.open_repository(str(root / "repo")) as repo:
        summary = repo.catalog.sync_summary("mirror", not_failures=[ABANDONED])
    assert summary["last"]["error"] == ABANDONED and summary["failures"] == 0


@pytest.mark.slow
def test_two_apps_at_once_sync_each_backup_once_and_break_nothing(tmp_path: Path) -> None:
    root = _write_app(tmp_path / "app")
    _env_file(root)
    first, second = _start_app(root), _start_app(root)
    reports = [_finish(first)[0], _finish(second)[0]]
    backups = sorted(r["backup"] for r in reports)
    assert len(set(backups)) == 2
    assert _mirror_ids(root) == backups
    with stcore.open_repository(str(root / "repo")) as repo:
        assert repo.check().ok
        assert sorted(m.id for m in repo.snapshots()) == backups
    assert _sync_failures(root) == 0


@pytest.mark.slow
def test_an_app_beside_a_stcore_daemon_leaves_the_syncs_to_it(tmp_path: Path) -> None:
    root = _write_app(tmp_path / "app")
    _env_file(root)  # the daemon reads .env too: it syncs every second
    daemon = subprocess.Popen(
        [sys.executable, "-m", "stcore.cli", "daemon"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def daemon_runs() -> bool:
            status = run_cli("status", "--json", cwd=root)
            return status.returncode == 0 and json.loads(status.stdout)["daemon"]["running"]

        _wait_for(daemon_runs, "the daemon to start")
        report, exit_seconds = _finish(_start_app(root))
        run = report["auto_sync"]["last_runs"]["sync:mirror"]
        assert run["ok"] is True and run["skipped"].startswith("stcore daemon (pid ")
        assert exit_seconds < 5
        assert daemon.poll() is None  # the app never stopped or refused the daemon
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    stderr = daemon.stderr.read() if daemon.stderr else ""
    assert code == 0, stderr
    assert _mirror_ids(root) == [report["backup"]]
    assert _sync_failures(root) == 0
