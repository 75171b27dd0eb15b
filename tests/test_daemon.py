"""The auto-sync daemon: scheduled backups and syncs, one run at a time, clean stops.

The first test runs the real `stcore daemon` process; the others drive :class:`AutoSync` in
process with a deliberately slow source plugin, which makes overlapping runs and mid-run stops
observable.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import stcore
from stcore.config import RemoteConfig, Settings, SourceConfig, load_settings
from stcore.daemon import ABANDONED, AutoSync, DaemonBusyError, RunRecord, daemon_config
from stcore.errors import ConfigError
from stcore.interfaces import ErrorReporter, SourceEntry
from stcore.plugins import PluginHost
from stcore.registry import Registration
from stcore.sync import SyncOptions
from tests.conftest import run_cli

# --- helpers -------------------------------------------------------------------------------------


def _write_project(root: Path) -> None:
    """data/, an empty mirror/, a stcore.toml naming both, and an initialised repository."""
    (root / "data").mkdir()
    (root / "data" / "state.json").write_text('{"version": 1}')
    (root / "mirror").mkdir()
    (root / "stcore.toml").write_text(
        '[repository]\nurl = "repo"\n\n'
        '[sources.data]\ntype = "files"\npath = "data"\n\n'
        '[remotes.mirror]\nurl = "mirror"\n'
    )
    init = run_cli("init", cwd=root)
    assert init.returncode == 0, init.stderr


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


class SlowStream(io.BytesIO):
    """File content that takes ``delay`` seconds to start arriving."""

    def __init__(self, data: bytes, delay: float) -> None:
        super().__init__(data)
        self._delay = delay

    def read(self, size: int | None = -1) -> bytes:
        if self._delay:
            time.sleep(self._delay)
            self._delay = 0
        return super().read(size)


#: set by SlowSource when a backup starts reading, so tests can stop it mid-run
backup_started = threading.Event()


class SlowSource:
    """``files`` random files, each taking ``delay`` seconds to read: a backup that is slow."""

    type_name = "slow"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.files = int(options.get("files", 3))
        self.delay = float(options.get("delay", 0.1))

    def describe(self) -> dict[str, Any]:
        return {"files": self.files, "delay": self.delay}

    def scan(self, report_error: ErrorReporter) -> Iterator[SourceEntry]:
        backup_started.set()
        for number in range(self.files):
            data = os.urandom(20_000)

            def opener(data: bytes = data) -> BinaryIO:
                return SlowStream(data, self.delay)

            yield SourceEntry(path=(f"f{number}",), kind="file", size=len(data), opener=opener)

    def close(self) -> None:
        pass


class SlowPlugin:
    @staticmethod
    @stcore.hookimpl
    def st_register_sources() -> list[Registration]:
        return [Registration(name="slow", load=lambda: SlowSource)]


@pytest.fixture
def host() -> PluginHost:
    return stcore.make_plugin_manager(extra_plugins=[("slow-source", SlowPlugin())])


def _settings(tmp_path: Path, *, files: int = 3, delay: float = 0.1) -> Settings:
    (tmp_path / "mirror").mkdir(exist_ok=True)
    return Settings(
        sources=(SourceConfig(name="slow", type="slow", options={"files": files, "delay": delay}),),
        configured_remotes=(RemoteConfig(name="mirror", url=str(tmp_path / "mirror")),),
    )


# --- the daemon process --------------------------------------------------------------------------


def test_daemon_process_backs_up_syncs_refuses_a_second_one_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    _write_project(tmp_path)
    log = tmp_path / "daemon.log"
    env = {
        **os.environ,
        "STCORE_BACKUP_INTERVAL": "0.5",
        "CLOUD_SYNC_INTERVAL": "0.5",
        "CLOUD_AUTO_SYNC": "true",
    }
    with open(log, "w") as stderr:  # a file, not a pipe: nobody has to keep reading it
        daemon = subprocess.Popen(
            [sys.executable, "-m", "stcore.cli", "daemon"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    try:

        def runs(event: str) -> int:
            return sum(1 for e in _events(log) if e["event"] == event)

        _wait_for(lambda: runs("backup") >= 3 and runs("sync") >= 2, 20, "three backups")

        second = run_cli("daemon", cwd=tmp_path, env=env)
        assert second.returncode == 1
        assert "another stcore daemon is running" in second.stderr

        status = run_cli("status", "--json", cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        document = json.loads(status.stdout)
        assert document["daemon"]["running"] is True
        assert document["daemon"]["pid"] == daemon.pid
        (mirror,) = document["remotes"]
        assert mirror["name"] == "mirror" and mirror["next_run"] is not None
        assert document["daemon"]["next_backup"] is not None

        stopped_at = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
        assert time.monotonic() - stopped_at < 5
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    events = _events(log)  # every stderr line is one JSON run record
    assert {e["event"] for e in events} == {"backup", "sync"}
    if not events[-1]["ok"]:  # SIGTERM came mid-run: that run was dropped, safely
        assert events.pop()["error"] == ABANDONED
    for event in events:
        assert event["ok"] is True, event
        assert event["error"] is None
        assert isinstance(event["seconds"], float) and isinstance(event["bytes"], int)
    backups = [e["snapshot"] for e in events if e["event"] == "backup"]
    assert all(e["remote"] == "mirror" for e in events if e["event"] == "sync")

    local = json.loads(run_cli("snapshots", "--json", cwd=tmp_path).stdout)
    assert sorted(s["id"] for s in local) == sorted(backups)
    with stcore.open_repository(str(tmp_path / "mirror"), cache_root=tmp_path / "rc") as remote:
        on_mirror = {m.id for m in remote.snapshots()}
        assert remote.check().ok
    assert len(on_mirror) >= 2 and on_mirror <= set(backups)

    after = json.loads(run_cli("status", "--json", cwd=tmp_path).stdout)
    assert after["daemon"]["running"] is False
    assert after["remotes"][0]["next_run"] is None
    assert after["remotes"][0]["last_sync"] is not None


def test_daemon_with_nothing_to_do_says_what_to_set(tmp_path: Path) -> None:
    _write_project(tmp_path)
    result = run_cli("daemon", cwd=tmp_path)
    assert result.returncode == 1
    assert "nothing to do" in result.stderr and "STCORE_BACKUP_INTERVAL" in result.stderr
    assert "Traceback" not in result.stderr


# --- AutoSync in process -------------------------------------------------------------------------


def test_runs_never_overlap_even_when_slower_than_the_interval(
    tmp_path: Path, host: PluginHost
) -> None:
    records: list[RunRecord] = []
    settings = _settings(tmp_path, files=3, delay=0.1)  # a backup takes >= 0.3 s
    auto = AutoSync(
        str(tmp_path / "repo"),
        settings,
        backup_interval=0.05,
        sync_interval=0.05,
        auto_sync=True,
        on_run=records.append,
        host=host,
        # sync is slow too: ~60 kB per snapshot at 200 kB/s
        sync_options=SyncOptions(bandwidth_limit=200_000, concurrency=2),
    )
    stcore.init_repository(str(tmp_path / "repo"), host=host).close()
    with auto:
        rival = AutoSync(str(tmp_path / "repo"), settings, backup_interval=1, host=host)
        with pytest.raises(DaemonBusyError, match="another stcore daemon"):
            rival.start()
        rival.close()
        # run_once from another thread while the schedule runs waits for its turn
        extra = auto.run_once()
        assert [r.event for r in extra] == ["backup", "sync"]
        _wait_for(lambda: len(records) >= 8, 20, "eight runs")
        assert auto.stop(timeout=5)
    assert not auto.running
    spans = sorted((r.started, r.finished) for r in records)
    for (_, previous_end), (start, _) in itertools.pairwise(spans):
        assert start >= previous_end, "two runs overlapped"
    assert {r.event for r in records} == {"backup", "sync"}
    in_order = sorted(records, key=lambda r: r.started)
    if in_order[-1].error == ABANDONED:  # the stop came mid-run
        in_order.pop()
    assert all(r.ok for r in in_order), [r.error for r in in_order if not r.ok]
    assert all(r.seconds >= 0.3 for r in in_order if r.event == "backup")


def test_stop_abandons_a_backup_safely_and_quickly(tmp_path: Path, host: PluginHost) -> None:
    records: list[RunRecord] = []
    repo_url = str(tmp_path / "repo")
    stcore.init_repository(repo_url, host=host).close()
    backup_started.clear()
    auto = AutoSync(
        repo_url,
        _settings(tmp_path, files=40, delay=0.1),  # a 4 s backup
        backup_interval=60,
        auto_sync=False,
        on_run=records.append,
        host=host,
    )
    auto.start()
    assert backup_started.wait(5)
    time.sleep(0.25)  # a few files into it
    stopping = time.monotonic()
    assert auto.stop(timeout=3)
    assert time.monotonic() - stopping < 1.5
    auto.close()
    (record,) = records
    assert record.ok is False and record.error is not None and "abandoned" in record.error
    with stcore.open_repository(repo_url, host=host) as repo:
        assert repo.snapshots() == []  # no half snapshot
        assert repo.check().ok
        # and the next run works as usual
        again = AutoSync(repo_url, _settings(tmp_path, files=1, delay=0), host=host)
        (backup, sync) = again.run_once()
        again.close()
    assert backup.ok and backup.snapshot and sync.ok and sync.remote == "mirror"


def test_a_second_process_waits_for_the_run_lock(tmp_path: Path, host: PluginHost) -> None:
    """`stcore daemon --once` in another process starts only after the running backup ended."""
    _write_project(tmp_path)
    settings = load_settings(tmp_path / "stcore.toml")
    records: list[RunRecord] = []
    slow = Settings(
        repository=settings.repository,
        sources=(SourceConfig(name="slow", type="slow", options={"files": 10, "delay": 0.1}),),
    )
    backup_started.clear()
    auto = AutoSync(
        None, slow, backup_interval=60, auto_sync=False, on_run=records.append, host=host
    )
    with auto:
        assert backup_started.wait(5)
        once = run_cli("daemon", "--once", "--no-auto-sync", cwd=tmp_path)
        other_started = json.loads(once.stderr.splitlines()[0])["time"]
    assert once.returncode == 0, once.stderr
    (mine,) = records
    assert mine.ok
    assert dt.datetime.fromisoformat(other_started).timestamp() >= mine.finished - 0.01


def test_intervals_come_from_arguments_env_then_stcore_toml(tmp_path: Path) -> None:
    (tmp_path / "stcore.toml").write_text(
        "[daemon]\nbackup_interval = 600\nsync_interval = 120\nauto_sync = true\n"
    )
    settings = load_settings(tmp_path / "stcore.toml")
    assert daemon_config(settings, environ={}) == daemon_config(
        settings, environ={"CLOUD_SYNC_INTERVAL": " "}
    )
    from_file = daemon_config(settings, environ={})
    assert (from_file.backup_interval, from_file.sync_interval, from_file.auto_sync) == (
        600,
        120,
        True,
    )
    env = {"STCORE_BACKUP_INTERVAL": "30", "CLOUD_SYNC_INTERVAL": "45", "CLOUD_AUTO_SYNC": "no"}
    from_env = daemon_config(settings, environ=env)
    assert (from_env.backup_interval, from_env.sync_interval, from_env.auto_sync) == (
        30,
        45,
        False,
    )
    explicit = daemon_config(settings, backup_interval=5, auto_sync=True, environ=env)
    assert (explicit.backup_interval, explicit.auto_sync) == (5, True)
    defaults = daemon_config(Settings(), environ={})
    assert (defaults.backup_interval, defaults.sync_interval, defaults.auto_sync) == (
        None,
        3600,
        False,
    )
    with pytest.raises(ConfigError, match="CLOUD_SYNC_INTERVAL"):
        daemon_config(settings, environ={"CLOUD_SYNC_INTERVAL": "hourly"})
    with pytest.raises(ConfigError, match="CLOUD_AUTO_SYNC"):
        daemon_config(settings, environ={"CLOUD_AUTO_SYNC": "maybe"})
    (tmp_path / "stcore.toml").write_text("[daemon]\nbackup_every = 5\n")
    with pytest.raises(ConfigError, match="unknown \\[daemon\\] keys: backup_every"):
        daemon_config(load_settings(tmp_path / "stcore.toml"), environ={})
