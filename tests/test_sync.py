"""Sync to a remote: incremental, ordered, resumable, retried, and refusing what is unsafe.

The remote here is a local directory behind a wrapping backend that records every write and can
fail on cue; the same engine against the cloud emulators is tested in integration/test_sync.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from st_local.backend import LocalBackend

import stcore
from stcore.config import RemoteConfig
from stcore.errors import AccessDeniedError, RepositoryError, SyncBusyError, TransientBackendError
from stcore.registry import Registration
from stcore.repository import Repository
from stcore.sync import SyncOptions, _sync_lock


class RecordingBackend(LocalBackend):
    """A local directory that records writes and can fail on the n-th one."""

    writes: list[str]
    fail: Callable[[str, int], BaseException | None] | None = None
    #: called after a successful write: an error here is an answer lost on the way back
    lose_answer: Callable[[str], BaseException | None] | None = None

    def write(self, key: str, data: bytes) -> None:
        failure = self.fail(key, len(self.writes)) if self.fail else None
        if failure is not None:
            raise failure
        super().write(key, data)
        self.writes.append(key)
        lost = self.lose_answer(key) if self.lose_answer else None
        if lost is not None:
            raise lost


class Recorder:
    """The plugin: ``rec:///path`` opens a RecordingBackend; tests read ``last`` afterwards."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.fail: Callable[[str, int], BaseException | None] | None = None
        self.lose_answer: Callable[[str], BaseException | None] | None = None

    def open(self, url: str, *, options: Mapping[str, Any], create: bool = False) -> LocalBackend:
        backend = RecordingBackend.open(
            url.replace("rec://", "file://"), options=options, create=create
        )
        backend.writes = self.writes
        backend.fail = self.fail
        backend.lose_answer = self.lose_answer
        return backend

    def plugin(self) -> object:
        """A hookimpl namespace registering ``rec`` (pluggy marks functions, not methods)."""

        def st_register_backends() -> list[Registration]:
            return [Registration(name="rec", load=lambda: self.open, schemes=("rec",))]

        return type(
            "RecorderPlugin",
            (),
            {"st_register_backends": staticmethod(stcore.hookimpl(st_register_backends))},
        )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def local(tmp_path: Path, recorder: Recorder) -> Repository:
    host = stcore.make_plugin_manager(extra_plugins=[("recorder", recorder.plugin())])
    return stcore.init_repository(str(tmp_path / "local"), host=host, pack_size=256 * 1024)


@pytest.fixture
def remote(tmp_path: Path) -> RemoteConfig:
    (tmp_path / "remote").mkdir()
    return RemoteConfig(name="mirror", url=f"rec://{tmp_path / 'remote'}")


def _backup(repo: Repository, root: Path, files: int = 6, size: int = 200_000) -> str:
    root.mkdir(exist_ok=True)
    for _ in range(files):
        (root / f"f-{os.urandom(4).hex()}").write_bytes(os.urandom(size))
    return repo.backup(stcore.sources_for_paths([str(root)])).manifest.id


def _remote_repo(remote: RemoteConfig, tmp_path: Path) -> Repository:
    return stcore.open_repository(remote.url.replace("rec://", ""), cache_root=tmp_path / "rc")


def test_full_then_incremental_sync_uploads_only_what_is_new(
    local: Repository, remote: RemoteConfig, recorder: Recorder, tmp_path: Path
) -> None:
    first = _backup(local, tmp_path / "data")
    result = local.sync(remote)
    assert result.snapshots == (first,)
    assert result.objects_uploaded == len(recorder.writes) - 1  # the config is not counted
    assert local.sync(remote).objects_uploaded == 0
    before = set(recorder.writes)
    second = _backup(local, tmp_path / "data", files=1)
    packs_before = {k for k in before if k.startswith("data/")}
    result = local.sync(remote)
    new = [k for k in recorder.writes if k not in before]
    assert result.snapshots == (second,)
    assert not set(new) & packs_before
    assert [k.split("/")[0] for k in new].count("snapshots") == 1
    assert [k.split("/")[0] for k in new].count("index") == 1
    assert _remote_repo(remote, tmp_path).check(read_data=True).ok


def test_a_long_lived_repository_syncs_snapshots_other_processes_made(
    local: Repository, remote: RemoteConfig, tmp_path: Path
) -> None:
    """The in-app scheduler keeps one Repository open for hours: each sync must see what
    another process (here another Repository object) backed up since it opened."""
    first = _backup(local, tmp_path / "data")
    assert local.sync(remote).snapshots == (first,)
    other = stcore.open_repository(local.location, cache_root=tmp_path / "other-cache")
    second = _backup(other, tmp_path / "data", files=1)
    other.close()
    assert local.sync(remote).snapshots == (second,)
    assert _remote_repo(remote, tmp_path).check(read_data=True).ok


def test_opening_the_mirror_as_a_repository_keeps_the_local_sync_state(
    local: Repository, remote: RemoteConfig, tmp_path: Path
) -> None:
    first = _backup(local, tmp_path / "data")
    local.sync(remote)
    second = _backup(local, tmp_path / "data", files=1)
    mirror = _remote_repo(remote, tmp_path)
    mirror_default_cache = stcore.open_repository(mirror.location)  # same id, default cache root
    assert [m.id for m in mirror_default_cache.snapshots()] == [first]
    reopened = stcore.open_repository(local.location)
    assert [m.id for m in reopened.snapshots()] == [second, first]
    assert [m.id for m in reopened.snapshots(synced=True, remote="mirror")] == [first]


def test_uploads_go_packs_then_indexes_then_manifests(
    local: Repository, remote: RemoteConfig, recorder: Recorder, tmp_path: Path
) -> None:
    _backup(local, tmp_path / "a")
    _backup(local, tmp_path / "a", files=2)
    local.sync(remote)
    kinds = [k.split("/")[0] for k in recorder.writes if k != "config"]
    order = {"data": 0, "index": 1, "snapshots": 2}
    assert [order[k] for k in kinds] == sorted(order[k] for k in kinds)


def test_syncing_one_snapshot_makes_it_complete_on_the_remote(
    local: Repository, remote: RemoteConfig, tmp_path: Path
) -> None:
    old = _backup(local, tmp_path / "old")
    _backup(local, tmp_path / "new")
    result = local.sync(remote, [old])
    assert result.snapshots == (old,)
    mirror = _remote_repo(remote, tmp_path)
    assert [m.id for m in mirror.snapshots()] == [old]
    assert mirror.check(read_data=True).ok
    mirror.restore(old, tmp_path / "out")
    assert local.snapshots(synced=True, remote="mirror")[0].id == old
    assert len(local.snapshots(synced=False, remote="mirror")) == 1


def test_a_sync_killed_midway_resumes_without_uploading_twice(
    local: Repository, remote: RemoteConfig, recorder: Recorder, tmp_path: Path
) -> None:
    _backup(local, tmp_path / "data", files=12)
    crash_after = 4

    class Killed(BaseException):
        pass

    recorder.fail = lambda key, count: Killed() if count == crash_after else None
    with pytest.raises(Killed):
        local.sync(remote, options=SyncOptions(concurrency=1))
    uploaded_before = list(recorder.writes)
    assert not any(k.startswith("snapshots/") for k in uploaded_before)
    assert _remote_repo(remote, tmp_path).check().ok  # consistent: no snapshot, no dangling index
    recorder.fail = None
    result = local.sync(remote)
    assert len(recorder.writes) == len(set(recorder.writes))  # nothing written twice
    assert result.objects_uploaded == len(recorder.writes) - len(uploaded_before)
    assert _remote_repo(remote, tmp_path).check(read_data=True).ok
    runs = local.catalog.sync_runs("mirror")
    assert runs[0]["ok"] == 1 and runs[1]["ok"] == 0


def test_transient_errors_are_retried(
    local: Repository, remote: RemoteConfig, recorder: Recorder, tmp_path: Path
) -> None:
    _backup(local, tmp_path / "data")
    attempts: dict[str, int] = {}

    def flaky(key: str, count: int) -> BaseException | None:
        attempts[key] = attempts.get(key, 0) + 1
        return TransientBackendError("503 slow down") if attempts[key] < 3 else None

    recorder.fail = flaky
    result = local.sync(remote, options=SyncOptions(max_backoff=0.01))
    assert result.objects_uploaded > 0
    assert all(n == 3 for n in attempts.values())


def test_an_upload_whose_answer_was_lost_is_retried_and_counted_once(
    local: Repository, remote: RemoteConfig, recorder: Recorder, tmp_path: Path
) -> None:
    _backup(local, tmp_path / "data")
    lost: set[str] = set()

    def lose_first_answer(key: str) -> BaseException | None:
        if key in lost or key == "config":
            return None
        lost.add(key)
        return TransientBackendError("connection reset before the response")

    recorder.lose_answer = lose_first_answer
    result = local.sync(remote, options=SyncOptions(max_backoff=0.01))
    uploaded = [k for k in recorder.writes if k != "config"]
    assert result.objects_uploaded == len(uploaded) == len(lost)
    assert _remote_repo(remote, tmp_path).check(read_data=True).ok


def test_permanent_errors_stop_at_once(
    local: Repository, remote: RemoteConfig, recorder: Recorder, tmp_path: Path
) -> None:
    _backup(local, tmp_path / "data")
    calls: list[str] = []

    def denied(key: str, count: int) -> BaseException | None:
        calls.append(key)
        return AccessDeniedError("access denied to mirror") if key.startswith("data/") else None

    recorder.fail = denied
    with pytest.raises(AccessDeniedError, match="access denied"):
        local.sync(remote, options=SyncOptions(concurrency=1))
    assert len([c for c in calls if c.startswith("data/")]) == 1
    assert local.catalog.sync_runs("mirror")[0]["error"] == "access denied to mirror"


def test_a_remote_holding_another_repository_is_refused(
    local: Repository, remote: RemoteConfig, tmp_path: Path
) -> None:
    stcore.init_repository(remote.url.replace("rec://", "")).close()
    _backup(local, tmp_path / "data")
    with pytest.raises(RepositoryError, match="holds another repository"):
        local.sync(remote)


def test_only_one_sync_per_remote_at_a_time(local: Repository, remote: RemoteConfig) -> None:
    with _sync_lock(local.cache_dir, "mirror"), pytest.raises(SyncBusyError, match="another sync"):
        local.sync(remote)


def test_bandwidth_limit_slows_uploads(
    local: Repository, remote: RemoteConfig, tmp_path: Path
) -> None:
    _backup(local, tmp_path / "data", files=3, size=100_000)
    started = time.monotonic()
    result = local.sync(remote, options=SyncOptions(bandwidth_limit=600_000))
    elapsed = time.monotonic() - started
    assert result.bytes_uploaded > 300_000
    assert elapsed >= (result.bytes_uploaded - 600_000) / 600_000 * 0.9


def test_cli_sync_json_summary_and_no_remote_error(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("x")
    (tmp_path / "mirror").mkdir()
    env = {"STCORE_REPO": str(tmp_path / "repo")}
    run_cli("init", env=env)
    run_cli("backup", str(tmp_path / "data"), env=env)
    missing = run_cli("sync", env=env, cwd=tmp_path)
    assert missing.returncode == 1 and "no remote is configured" in missing.stderr
    (tmp_path / "stcore.toml").write_text('[remotes.mirror]\nurl = "mirror"\n')
    result = run_cli("sync", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import json

    (summary,) = json.loads(result.stdout)
    assert summary["remote"] == "mirror" and len(summary["snapshots"]) == 1
    assert summary["objects_uploaded"] == 3 and summary["bytes_uploaded"] > 0
    listing = json.loads(run_cli("snapshots", "--json", "--synced", env=env, cwd=tmp_path).stdout)
    assert list(listing[0]["synced"]) == ["mirror"]


# --- index compaction reaches the remote ----------------------------------------------------------


def _index_ids(location: str) -> set[str]:
    return {p.name for p in (Path(location) / "index").iterdir()}


def test_a_local_compaction_replaces_the_remotes_small_index_objects(
    local: Repository, remote: RemoteConfig, tmp_path: Path
) -> None:
    from stcore.repo.compact import COMPACT_AT

    for _ in range(COMPACT_AT + 3):  # a sync after every backup, as the daemon does
        _backup(local, tmp_path / "data", files=1, size=5000)
        local.sync(remote)
    remote_dir = remote.url.replace("rec://", "")
    assert len(_index_ids(local.location)) <= 4
    assert _index_ids(remote_dir) == _index_ids(local.location)
    mirror = _remote_repo(remote, tmp_path)
    assert len(mirror.snapshots()) == COMPACT_AT + 3
    assert mirror.check(read_data=True).ok


def test_a_remote_index_object_not_known_here_stays_unless_covered(
    local: Repository, remote: RemoteConfig, tmp_path: Path
) -> None:
    from stcore.models import IndexEntry
    from stcore.repo.compact import compact_index
    from stcore.repo.format import encode_index

    _backup(local, tmp_path / "data", files=1, size=5000)
    local.sync(remote)
    remote_dir = remote.url.replace("rec://", "")
    mirror = _remote_repo(remote, tmp_path)
    known = next(iter(local.store.load_index().all_entries()))
    # what a prune on the remote could leave: entries this repository does not have ...
    foreign = IndexEntry(
        blob_id=os.urandom(32),
        blob_type=known.blob_type,
        pack_id=known.pack_id,
        offset=0,
        stored_length=10,
        raw_length=10,
    )
    uncovered = mirror.store.write_content_addressed(
        "index", encode_index(mirror.store.codec, [known, foreign])
    ).hex()
    # ... and a copy of entries both places hold
    covered = mirror.store.write_content_addressed(
        "index", encode_index(mirror.store.codec, [known])
    ).hex()
    for _ in range(3):
        _backup(local, tmp_path / "data", files=1, size=5000)
    assert compact_index(local.store, at=1) is not None
    local.sync(remote)
    assert _index_ids(remote_dir) == _index_ids(local.location) | {uncovered}
    assert covered not in _index_ids(remote_dir)
    again = _remote_repo(remote, tmp_path / "again")
    for manifest in again.snapshots():  # (check would flag the made-up entry, rightly)
        again.restore(manifest.id, tmp_path / "out" / manifest.id)


def test_a_compaction_during_the_sync_makes_it_plan_again(
    local: Repository, remote: RemoteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stcore.repo.compact import compact_index

    ids = [_backup(local, tmp_path / "data", files=1, size=5000) for _ in range(4)]
    read = local.store.read_index_entries
    compacted: list[object] = []

    def racing(key: str, *, cached: bool = True) -> object:
        if not compacted:  # the sync listed the index; a backup's compaction runs now
            compacted.append(compact_index(local.store, at=1))
        return read(key, cached=cached)

    monkeypatch.setattr(local.store, "read_index_entries", racing)
    result = local.sync(remote)
    assert compacted[0] is not None
    assert sorted(result.snapshots) == sorted(ids)
    remote_dir = remote.url.replace("rec://", "")
    assert _index_ids(remote_dir) == _index_ids(local.location)
    assert _remote_repo(remote, tmp_path).check(read_data=True).ok


def test_two_syncs_on_either_side_of_a_compaction_never_leave_the_remote_without_an_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's remote and a manual `stcore sync <url>` (two names, two sync locks) that
    planned before and after a compaction both reach the clean-up at once: the remote's lock
    lets one decide; the remote still restores every snapshot."""
    import threading

    import stcore.repo.backup as backup_module
    from stcore.repo.compact import compact_index
    from stcore.repo.store import Store
    from stcore.sync import Syncer

    monkeypatch.setattr(backup_module, "compact_index", lambda store: None)
    local = stcore.init_repository(str(tmp_path / "local"))
    ids = [_backup(local, tmp_path / "data", files=1, size=5000) for _ in range(3)]
    (tmp_path / "remote").mkdir()
    url = str(tmp_path / "remote")
    before = Syncer(local.store, local.catalog, RemoteConfig(name="cloud", url=url))
    after = Syncer(local.store, local.catalog, RemoteConfig(name="adhoc", url=url))
    remote_a = before._open_remote()
    before._ensure_config(remote_a)
    before._copy_data(remote_a, ids)
    for snapshot_id in ids:
        before._copy(remote_a, f"snapshots/{snapshot_id}")
    assert compact_index(local.store, at=1) is not None
    remote_b = after._open_remote()
    after._copy_data(remote_b, ids)

    barrier = threading.Barrier(2)
    read = Store.read_index_rows

    def decide_together(self: Store, key: str, *, cached: bool = True) -> object:
        if url in self.location:  # both listed the remote; now both decide
            try:
                barrier.wait(timeout=2)
            except threading.BrokenBarrierError:
                pass
        return read(self, key, cached=cached)

    monkeypatch.setattr(Store, "read_index_rows", decide_together)
    threads = [
        threading.Thread(target=syncer._drop_replaced_indexes, args=(remote,))
        for syncer, remote in ((before, remote_a), (after, remote_b))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.undo()
    assert _index_ids(url)
    mirror = stcore.open_repository(url, cache_root=tmp_path / "rc")
    assert mirror.check(read_data=True).ok
    for snapshot_id in ids:
        mirror.restore(snapshot_id, tmp_path / "out" / snapshot_id)
