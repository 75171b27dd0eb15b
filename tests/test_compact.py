"""Index compaction: many small index objects become one, and nothing is ever lost.

* backups past the threshold merge the small index objects, and every snapshot still reads;
* the merged index has exactly the entries the small ones had (every count of objects up to
  a few past the threshold);
* a damaged index object is neither merged nor deleted;
* a reader (or a second compaction) that listed objects a compaction then deleted still gets
  every entry; an object listed twice but missing twice is damage;
* a compaction that fails (a full disk) leaves the backup done and the old objects in place.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import stcore
from stcore.errors import ObjectNotFoundError
from stcore.repo import compact as compact_module
from stcore.repo.compact import COMPACT_AT, compact_index
from stcore.repo.format import object_key
from stcore.repository import Repository


def index_keys(repo: Repository) -> list[str]:
    return sorted(info.key for info in repo.backend.list("index/"))


def entries(repo: Repository) -> set[tuple[bytes, bytes, int, int]]:
    return set(repo.store.load_index().locations())


def backups(repo: Repository, root: Path, count: int) -> list[str]:
    root.mkdir(exist_ok=True)
    ids = []
    for n in range(count):
        (root / f"f{n}").write_bytes(os.urandom(2000) + str(n).encode())
        ids.append(repo.backup(stcore.sources_for_paths([str(root)])).manifest.id)
    return ids


@pytest.fixture
def uncompacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    """A repository of 20 backups whose index was never compacted."""
    monkeypatch.setattr(compact_module, "COMPACT_AT", 10_000)
    repo = stcore.init_repository(str(tmp_path / "repo"))
    monkeypatch.setattr("stcore.repo.backup.compact_index", lambda store: None)
    backups(repo, tmp_path / "data", 20)
    monkeypatch.undo()
    return repo


def test_backups_past_the_threshold_keep_few_index_objects(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    ids = backups(repo, tmp_path / "data", 3 * COMPACT_AT + 5)
    assert len(index_keys(repo)) <= COMPACT_AT + 1
    fresh = stcore.open_repository(repo.location)
    assert sorted(m.id for m in fresh.snapshots()) == sorted(ids)
    assert fresh.check(read_data=True).ok
    for snapshot_id in ids[:: COMPACT_AT // 2]:
        fresh.restore(snapshot_id, tmp_path / "out" / snapshot_id)


@pytest.mark.parametrize("count", range(1, 24))
def test_the_merged_index_holds_exactly_the_entries_of_the_small_ones(
    uncompacted: Repository, count: int
) -> None:
    keys = index_keys(uncompacted)
    for key in keys[count:]:  # keep ``count`` objects
        uncompacted.backend.delete(key)
    before = entries(uncompacted)
    result = compact_index(uncompacted.store, at=3)
    if min(count, 20) <= 3:
        assert result is None and len(index_keys(uncompacted)) == min(count, 20)
    else:
        assert result is not None and result.merged == min(count, 20)
        assert index_keys(uncompacted) == [result.written]
    assert entries(uncompacted) == before


def test_large_objects_are_left_alone(uncompacted: Repository) -> None:
    sizes = {info.key: info.size for info in uncompacted.backend.list("index/")}
    small = sorted(sizes, key=sizes.__getitem__)[:12]
    limit = max(sizes[k] for k in small) + 1
    large = set(sizes) - {k for k in sizes if sizes[k] < limit}
    before = entries(uncompacted)
    result = compact_index(uncompacted.store, at=3, small=limit)
    assert result is not None
    assert set(index_keys(uncompacted)) == large | {result.written}
    assert entries(uncompacted) == before


def test_a_damaged_index_object_is_neither_merged_nor_deleted(
    uncompacted: Repository, tmp_path: Path
) -> None:
    keys = index_keys(uncompacted)
    damaged = Path(uncompacted.location) / keys[5]
    body = bytearray(damaged.read_bytes())
    body[len(body) // 2] ^= 0x10
    damaged.chmod(0o600)
    damaged.write_bytes(bytes(body))
    result = compact_index(uncompacted.store, at=3)
    assert result is not None and result.merged == 19
    assert sorted(index_keys(uncompacted)) == sorted([keys[5], result.written])
    report = stcore.open_repository(uncompacted.location).check()
    assert not report.ok and any(keys[5].rsplit("/", 1)[-1] in e for e in report.errors)


def test_a_reader_that_listed_what_a_compaction_deleted_gets_every_entry(
    uncompacted: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = entries(uncompacted)
    store = uncompacted.store
    read = store.read_index_object
    compacted: list[object] = []

    def racing(key: str, *, cached: bool = True) -> object:
        if not compacted:  # the reader listed everything; now a backup compacts
            compacted.append(None)
            monkeypatch.setattr(store, "read_index_object", read)
            compacted.append(compact_index(store, at=3))
        return read(key, cached=cached)

    monkeypatch.setattr(store, "read_index_object", racing)
    index = store.load_index()
    assert compacted[1] is not None
    assert set(index.locations()) == before


def test_two_compactions_racing_lose_nothing(
    uncompacted: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = entries(uncompacted)
    store = uncompacted.store
    read = store.read_index_rows
    inner: list[object] = []

    def racing(key: str, *, cached: bool = True) -> object:
        if not inner:  # the first compaction read one object; a second one runs to the end
            inner.append(None)
            inner.append(compact_index(store, at=3))
        return read(key, cached=cached)

    monkeypatch.setattr(store, "read_index_rows", racing)
    outer = compact_index(store, at=3)
    monkeypatch.undo()
    assert inner[1] is not None and outer is None  # the rest was gone: nothing to merge
    assert entries(uncompacted) == before
    assert len(index_keys(uncompacted)) <= 2


def test_an_index_object_listed_but_missing_twice_is_damage(
    uncompacted: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = uncompacted.backend
    listing = backend.list
    phantom = object_key("index", "ab" * 32)

    def with_phantom(prefix: str = "") -> object:
        found = list(listing(prefix))
        if prefix == "index/":
            found.append(type(found[0])(key=phantom, size=100))
        return iter(found)

    monkeypatch.setattr(backend, "list", with_phantom)
    with pytest.raises(ObjectNotFoundError):
        uncompacted.store.load_index()
    damaged: list[str] = []
    index = uncompacted.store.load_index(on_damaged=lambda key, exc: damaged.append(key))
    assert damaged == [phantom] and len(index) > 0


def test_a_failed_compaction_leaves_the_backup_done_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    backups(repo, tmp_path / "data", COMPACT_AT)
    before = index_keys(repo)
    write = repo.store.write_content_addressed

    def full_disk(kind: str, body: bytes) -> bytes:
        if kind == "index" and len(index_keys(repo)) > COMPACT_AT:
            raise OSError(28, "No space left on device")
        return write(kind, body)

    monkeypatch.setattr(repo.store, "write_content_addressed", full_disk)
    with caplog.at_level(logging.WARNING, logger="stcore"):
        [last] = backups(repo, tmp_path / "data2", 1)
    assert "not compacted" in caplog.text and "No space left" in caplog.text
    assert set(before) < set(index_keys(repo)) and len(index_keys(repo)) == COMPACT_AT + 1
    assert stcore.open_repository(repo.location).check(read_data=True).ok
    monkeypatch.undo()
    backups(repo, tmp_path / "data3", 1)  # the next backup compacts
    assert len(index_keys(repo)) == 1
    assert last in {m.id for m in stcore.open_repository(repo.location).snapshots()}
