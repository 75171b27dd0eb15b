"""The Store: the engine's typed access to one repository's objects, without the facade."""

from __future__ import annotations

from pathlib import Path

import pytest

import stcore
from stcore.errors import (
    ContainerNotFoundError,
    CorruptObjectError,
    ObjectNotFoundError,
    RepositoryExistsError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
)
from stcore.plugins import make_plugin_manager
from stcore.repo.backup import backup
from stcore.repo.format import hash_id, object_key
from stcore.repo.init import create_store
from stcore.repo.store import Store, open_store
from stcore.sources import sources_for_paths


@pytest.fixture
def store(tmp_path: Path) -> Store:
    created = create_store(
        str(tmp_path / "repo"), make_plugin_manager(), cache_root=tmp_path / "cache"
    )
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_text("alpha " * 1000)
    (tmp_path / "src" / "sub" / "b.txt").write_text("beta")
    backup(created, sources_for_paths([str(tmp_path / "src")]))
    return created


def test_operations_run_on_a_store_without_a_repository_facade(store: Store) -> None:
    (snapshot_id,) = store.snapshot_ids()
    manifest = store.load_manifest(snapshot_id)
    root = next(iter(manifest.sources.values())).root
    paths = ["/".join(path) for path, _ in store.walk(root)]
    assert paths == ["a.txt", "sub", "sub/b.txt"]
    used = store.referenced_blobs([snapshot_id])
    assert root in used and all(blob in store.index for blob in used)


def test_a_store_reads_nothing_from_the_working_directory_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Store
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "stcore.toml").write_text("this is not toml [")
    monkeypatch.setenv("STCORE_CACHE_DIR", str(tmp_path / "not-this-one"))
    monkeypatch.setenv("STCORE_LOCK_WAIT", "not a number")
    reopened = open_store(store.location, make_plugin_manager(), cache_root=tmp_path / "cache")
    assert reopened.cache_dir.parent == tmp_path / "cache"
    backup(reopened, sources_for_paths([str(tmp_path / "src")]))
    assert len(reopened.snapshot_ids()) == 2
    assert not (tmp_path / "not-this-one").exists()


def test_content_addressed_writes_are_named_by_their_bytes_and_idempotent(store: Store) -> None:
    first = store.write_content_addressed("index", b"some bytes")
    assert first == hash_id(b"some bytes")
    assert store.write_content_addressed("index", b"some bytes") == first
    assert store.read_object(object_key("index", first)) == b"some bytes"


def test_a_range_past_the_end_is_reported_as_truncated(store: Store) -> None:
    key = object_key("index", store.write_content_addressed("index", b"0123456789"))
    assert store.read_object_range(key, 2, 3) == b"234"
    with pytest.raises(CorruptObjectError, match="truncated"):
        store.read_object_range(key, 5, 10)


def test_missing_objects_name_the_key_and_the_command_to_run(store: Store) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"index/.* is missing .*stcore check"):
        store.read_object("index/00/0000")
    with pytest.raises(SnapshotNotFoundError, match="does not exist"):
        store.load_manifest("20260101T000000Z-00000000")
    with pytest.raises(CorruptObjectError, match="not in the index"):
        store.read_blob(b"\0" * 32)


def test_a_manifest_under_another_snapshots_name_is_refused(store: Store) -> None:
    (snapshot_id,) = store.snapshot_ids()
    stored = store.read_object(object_key("snapshots", snapshot_id))
    store.backend.write(object_key("snapshots", "20260101T000000Z-deadbeef"), stored)
    with pytest.raises(CorruptObjectError):
        store.load_manifest("20260101T000000Z-deadbeef")


def test_deleting_a_manifest_twice_reports_it_was_gone(store: Store) -> None:
    (snapshot_id,) = store.snapshot_ids()
    assert store.delete_manifest(snapshot_id) is True
    assert store.delete_manifest(snapshot_id) is False
    assert store.snapshot_ids() == []


def test_a_mirror_shares_config_and_key_but_not_the_cache_directory(
    store: Store, tmp_path: Path
) -> None:
    other = stcore.make_plugin_manager().backends.get("local")(
        str(tmp_path / "mirror"), options={}, create=True
    )
    mirror = store.mirror(other)
    assert mirror.config == store.config and mirror.master_key is store.master_key
    assert mirror.location != store.location and mirror.cache_dir != store.cache_dir


def test_opening_a_missing_repository_never_creates_one(tmp_path: Path) -> None:
    with pytest.raises(ContainerNotFoundError, match="stcore init"):
        open_store(str(tmp_path / "nothing"), make_plugin_manager(), cache_root=tmp_path)
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepositoryNotFoundError, match="stcore init"):
        open_store(str(tmp_path / "empty"), make_plugin_manager(), cache_root=tmp_path)
    assert list((tmp_path / "empty").iterdir()) == []


def test_creating_over_an_existing_repository_is_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(RepositoryExistsError):
        create_store(store.location, make_plugin_manager(), cache_root=tmp_path / "cache")
