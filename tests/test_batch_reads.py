"""Reading many files at once costs a few requests, and the cache costs next to nothing.

The repository sits behind ``count://`` (a local directory whose backend records every read,
and which counts as remote, so the object cache is on), as in tests/test_cache.py. Results are
compared with fsspec's own ``file`` filesystem over the original tree: same answers, same
errors, far fewer reads.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stcore
from stcore.access.fs import StcoreFileSystem
from stcore.repo.objectcache import ObjectCache
from tests.conftest import run_cli
from tests.test_cache import counting_host

FOLDERS, PER_FOLDER = 12, 50
Reads = list[tuple[str, int, int | None]]


def data_reads(reads: Reads) -> list[tuple[str, int, int | None]]:
    return [read for read in reads if read[0].startswith("data/")]


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """600 small JSON documents in 12 folders, and a JSON-lines log, backed up into a
    ``count://`` repository."""
    root = tmp_path_factory.mktemp("batch")
    docs = root / "docs"
    for folder in range(FOLDERS):
        for number in range(PER_FOLDER):
            path = docs / f"f{folder:02d}" / f"doc{number:03d}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"folder": folder, "n": number, "pad": "x" * number}))
    (docs / "events.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(30)))
    repository = stcore.init_repository(str(root / "repo"))
    with repository:
        repository.backup([stcore.make_source("docs", "json", {"path": str(docs)})])
    return f"count://{root / 'repo'}", docs


def fresh(url: str, reads: Reads, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The repository opened as a new process would, with an empty cache of its own."""
    monkeypatch.setenv("STCORE_CACHE_DIR", str(tmp_path / "cache"))
    return stcore.open_repository(url, host=counting_host(reads))


def test_the_data_of_600_documents_takes_a_few_requests(
    documents: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, docs = documents
    reads: Reads = []
    repo = fresh(url, reads, tmp_path, monkeypatch)
    assert repo.object_cache is not None and repo.object_cache.stats()["entries"] == 0
    reads.clear()
    data = repo.snapshot("latest").sources["docs"].data
    assert len(data) == FOLDERS * PER_FOLDER + 1
    assert data["docs/f03/doc007.json"] == json.loads((docs / "f03" / "doc007.json").read_text())
    assert data["docs/events.jsonl"] == [{"i": i} for i in range(30)]
    # the source's trees, a level at a time, then every document together: all small, in one
    # pack, so each step is one range request
    assert len(data_reads(reads)) <= 4, data_reads(reads)
    repo.close()


def test_iter_jsonl_reads_several_files_together(
    documents: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = documents
    reads: Reads = []
    view = fresh(url, reads, tmp_path, monkeypatch).snapshot("latest").sources["docs"]
    view.files()
    reads.clear()
    paths = ["docs/events.jsonl", "docs/f00/doc001.json", "docs/events.jsonl"]
    records = list(view.iter_jsonl(paths))
    assert records == [*({"i": i} for i in range(30)), {"folder": 0, "n": 1, "pad": "x"}] + [
        {"i": i} for i in range(30)
    ]
    assert len(data_reads(reads)) == 1
    with pytest.raises(stcore.errors.PathNotFoundError, match=r"no file 'nope\.jsonl'"):
        list(view.iter_jsonl(["docs/events.jsonl", "nope.jsonl"]))


def test_fs_cat_of_many_paths_takes_a_few_requests_and_answers_as_fsspec_file_does(
    documents: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, docs = documents
    reads: Reads = []
    repo = fresh(url, reads, tmp_path, monkeypatch)
    fs = StcoreFileSystem(repo=url, skip_instance_cache=True)
    fs._session.repository = repo  # the counting one
    local = fsspec.filesystem("file")
    names = [f"f{f:02d}/doc{n:03d}.json" for f in range(FOLDERS) for n in range(PER_FOLDER)]
    reads.clear()
    got = fs.cat([f"latest/docs/docs/{name}" for name in names])
    assert len(data_reads(reads)) <= 4, data_reads(reads)
    expected = local.cat([str(docs / name) for name in names])
    assert list(got.values()) == list(expected.values())
    assert list(got) == [f"latest/docs/docs/{name}" for name in names]

    # globs, recursion, a range, and the three ways of reporting a missing file
    assert fs.cat("latest/docs/docs/f01/doc00*.json") == {
        f"latest/docs/docs/f01/doc00{i}.json": (docs / "f01" / f"doc00{i}.json").read_bytes()
        for i in range(10)
    }
    assert fs.cat("latest/docs/docs/f02/doc010.json", start=2, end=9) == local.cat(
        str(docs / "f02" / "doc010.json"), start=2, end=9
    )
    both = ["latest/docs/docs/f00/doc000.json", "latest/docs/docs/f00/missing.json"]
    with pytest.raises(FileNotFoundError, match=r"no entry 'docs/f00/missing\.json'"):
        fs.cat(both)
    assert list(fs.cat(both, on_error="omit")) == both[:1]
    returned = fs.cat(both, on_error="return")
    assert isinstance(returned[both[1]], FileNotFoundError)
    with pytest.raises(IsADirectoryError):
        fs.cat("latest/docs/docs/f00")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.integers(0, FOLDERS * PER_FOLDER - 1),
            st.none() | st.integers(-80, 80),
            st.none() | st.integers(-80, 80),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_cat_ranges_matches_slicing_the_original_files(
    documents: tuple[str, Path], ranges: list[tuple[int, int | None, int | None]]
) -> None:
    url, docs = documents
    fs = StcoreFileSystem(repo=url.replace("count://", ""))
    names = [f"f{i // PER_FOLDER:02d}/doc{i % PER_FOLDER:03d}.json" for i, _, _ in ranges]
    got = fs.cat_ranges(
        [f"latest/docs/docs/{name}" for name in names],
        [start for _, start, _ in ranges],
        [end for _, _, end in ranges],
    )
    for name, (_, start, end), data in zip(names, ranges, got, strict=True):
        assert data == (docs / name).read_bytes()[start:end]  # Python's slice semantics


def test_cat_ranges_reports_each_failure_in_its_place(documents: tuple[str, Path]) -> None:
    url, _ = documents
    fs = StcoreFileSystem(repo=url.replace("count://", ""))
    got = fs.cat_ranges(
        ["latest/docs/docs/f00/doc001.json", "latest/nosuch/x", "latest/docs/docs/f00"], 0, 5
    )
    assert got[0] == b'{"fol'
    assert isinstance(got[1], FileNotFoundError) and isinstance(got[2], IsADirectoryError)
    with pytest.raises(FileNotFoundError):
        fs.cat_ranges(["latest/nosuch/x"], 0, 5, on_error="raise")
    with pytest.raises(ValueError, match="as long"):
        fs.cat_ranges(["a", "b"], [0], [1])


def test_the_shared_size_counter_is_written_once_per_batch(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", max_bytes=1024**3)
    for number in range(500):
        cache.put("blob", f"{number:04d}", b"x" * 1000)
    assert not (tmp_path / "c" / ".size").exists()  # nothing recorded yet: 500 kB < 16 MiB
    cache.flush()
    assert (tmp_path / "c" / ".size").read_text() == str(500 * 1000)
    assert cache.stats()["kinds"] == {"blob": {"entries": 500, "bytes": 500 * 1000}}


def test_what_a_bulk_read_cached_is_recorded_by_the_time_the_repository_closes(
    documents: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = documents
    repo = fresh(url, [], tmp_path, monkeypatch)
    repo.snapshot("latest").sources["docs"].data  # noqa: B018 - read for its side effect
    cache = repo.object_cache
    repo.close()  # writes what waits (entries are written behind reads) and records it
    recorded = int((cache.root / ".size").read_text())
    actual = cache.stats()["bytes"]
    # never less than what is there (the bound depends on it); an entry written while the
    # first count ran may be counted twice, until the next eviction recounts
    largest = max(entry.stored_length for _, entry in repo.index.items())
    assert 0 < actual <= recorded <= actual + largest
    assert cache.stats()["kinds"]["blob"]["entries"] >= FOLDERS * PER_FOLDER


def test_a_full_disk_under_the_cache_costs_the_read_nothing(
    documents: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stcore.repo import objectcache

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    url, docs = documents
    repo = fresh(url, [], tmp_path, monkeypatch)
    monkeypatch.setattr(objectcache, "atomic_write", no_space)
    data = repo.snapshot("latest").sources["docs"].data
    assert data["docs/f03/doc007.json"] == json.loads((docs / "f03" / "doc007.json").read_text())
    repo.object_cache.drain()
    assert repo.object_cache.failed_writes >= FOLDERS * PER_FOLDER


def make_database(path: Path, rows: int = 3000) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        db.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i}" * 5,) for i in range(rows)])
    db.close()


def test_connect_writes_one_counted_working_copy_and_nothing_else_to_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_database(tmp_path / "metrics.db")
    repository = stcore.init_repository(str(tmp_path / "repo"))
    with repository:
        repository.backup(
            [stcore.make_source("metrics", "sqlite", {"path": str(tmp_path / "metrics.db")})]
        )
    url = f"count://{tmp_path / 'repo'}"
    reads: Reads = []
    repo = fresh(url, reads, tmp_path, monkeypatch)
    connection = repo.snapshot("latest").sources["metrics"].connect()
    assert connection.execute("SELECT count(*) FROM t").fetchone() == (3000,)
    kinds = repo.object_cache.stats()["kinds"]
    assert "blob" not in kinds or kinds["blob"]["entries"] <= 1  # at most the source's tree
    assert kinds["sqlite"]["entries"] == 1
    assert kinds["sqlite"]["bytes"] == (tmp_path / "metrics.db").stat().st_size
    reads.clear()
    again = repo.snapshot("latest").sources["metrics"].connect()  # the copy is reused
    assert again.execute("SELECT count(*) FROM t").fetchone() == (3000,)
    assert data_reads(reads) == []
    assert repo.object_cache.clear() >= kinds["sqlite"]["bytes"]
    # an open connection keeps reading the unlinked copy
    assert connection.execute("SELECT body FROM t WHERE id = 7").fetchone() == ("row 6" * 5,)


def test_working_copies_of_a_local_repository_show_in_cache_stats_and_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STCORE_CACHE_DIR", str(tmp_path / "cache"))
    make_database(tmp_path / "metrics.db", rows=200)
    repository = stcore.init_repository(str(tmp_path / "repo"))
    with repository:
        repository.backup(
            [stcore.make_source("metrics", "sqlite", {"path": str(tmp_path / "metrics.db")})]
        )
        repository.snapshot("latest").sources["metrics"].connect().close()
    done = run_cli("--repo", str(tmp_path / "repo"), "cache", "stats", "--json")
    assert done.returncode == 0, done.stdout
    stats = json.loads(done.stdout)
    assert stats["kinds"]["sqlite"]["entries"] == 1
    done = run_cli("--repo", str(tmp_path / "repo"), "cache", "stats")
    assert "1 SQLite working copy" in done.stdout, done.stdout
    done = run_cli("--repo", str(tmp_path / "repo"), "cache", "clear")
    assert done.returncode == 0 and "freed" in done.stdout
    stats = json.loads(run_cli("--repo", str(tmp_path / "repo"), "cache", "stats", "--json").stdout)
    assert stats["entries"] == 0


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> str:
    """20 snapshots of a JSON document that changes a little each time, in a ``count://``
    repository."""
    root = tmp_path_factory.mktemp("history")
    document = root / "hub.json"
    repository = stcore.init_repository(str(root / "repo"))
    with repository:
        for day in range(20):
            document.write_text(json.dumps({"day": day, "rows": list(range(5000))}))
            repository.backup([stcore.make_source("ai_hub", "json", {"path": str(document)})])
    return f"count://{root / 'repo'}"


def test_read_ahead_fetches_the_next_snapshots_while_one_is_read(
    history: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stcore.access.readahead import ReadAhead

    reads: Reads = []
    repo = fresh(history, reads, tmp_path, monkeypatch)
    manifests = repo.snapshots()
    repo.index  # noqa: B018 - read first, so only the read-ahead's own reads are counted
    reads.clear()
    ahead = ReadAhead(repo.store, manifests)
    ahead.reading(manifests[0].id, "ai_hub")
    ahead.wait()
    assert ahead.errors == []
    # each snapshot's tree and its new document sit side by side in one small pack: one
    # request per snapshot brings both, for the one being read and the DEPTH after it
    assert len(data_reads(reads)) == 17, data_reads(reads)
    reads.clear()
    for manifest in manifests[:17]:  # all in memory now
        assert repo.snapshot(manifest.id).sources["ai_hub"].data["day"] == 19 - manifests.index(
            manifest
        )
    assert data_reads(reads) == []
    ahead.reading(manifests[8].id, "ai_hub")  # half the window read: the next batch goes
    ahead.wait()
    reads.clear()
    assert repo.snapshot(manifests[19].id).sources["ai_hub"].data["day"] == 0
    assert data_reads(reads) == []
    ahead.close()


def test_reading_ahead_again_takes_what_the_object_cache_holds(
    history: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stcore.access.readahead import ReadAhead

    reads: Reads = []
    repo = fresh(history, reads, tmp_path, monkeypatch)
    manifests = repo.snapshots()
    first = ReadAhead(repo.store, manifests)
    first.reading(manifests[0].id, "ai_hub")
    first.wait()
    first.close()
    assert first.errors == [] and len(data_reads(reads)) == 17
    repo.store.object_cache.drain()
    repo.store.plain_cache.clear()  # a later loop, in this process or another
    reads.clear()
    again = ReadAhead(repo.store, manifests)
    again.reading(manifests[0].id, "ai_hub")
    again.wait()
    assert again.errors == [] and data_reads(reads) == []
    for manifest in manifests[:17]:
        assert "day" in repo.snapshot(manifest.id).sources["ai_hub"].data
    assert data_reads(reads) == []
    again.close()


def test_the_facade_reads_ahead_along_its_last_listing(
    history: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from cloud_storage_manager import CloudStorageManager

    reads: Reads = []
    storage = CloudStorageManager()
    storage._repo = fresh(history, reads, tmp_path, monkeypatch)
    # only the caller's own reads: the read-ahead thread may be fetching meanwhile
    mine: list[str] = []
    backend = storage._repo.backend
    read = backend.read

    def counted(key: str, offset: int = 0, length: int | None = None) -> bytes:
        if key.startswith("data/") and threading.current_thread() is threading.main_thread():
            mine.append(key)
        return read(key, offset, length)

    monkeypatch.setattr(backend, "read", counted)
    days, read_while_asked = [], []
    for backup in storage.list_backups(100):
        described = storage.get_backup(backup["backup_id"])
        before = len(mine)
        days.append(described["data_sources"]["ai_hub"]["day"])
        read_while_asked.append(len(mine) - before)
        assert storage._read_ahead is not None
        storage._read_ahead[1].wait()  # deterministic: the fetch ahead has landed
    assert days == list(range(19, -1, -1))
    # the caller never fetched anything itself: the first snapshot came with the batch the
    # read-ahead thread started with, in one request, and the caller waited for it
    assert read_while_asked == [0] * 20, data_reads(reads)
    assert len(data_reads(reads)) == 20, data_reads(reads)  # one request a snapshot
    storage.close()


def test_a_reader_waits_for_the_fetch_under_way_instead_of_fetching_again(
    history: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from cloud_storage_manager import CloudStorageManager

    reads: Reads = []
    storage = CloudStorageManager()
    storage._repo = fresh(history, reads, tmp_path, monkeypatch)
    mine: list[str] = []
    backend = storage._repo.backend
    read = backend.read

    def slow(key: str, offset: int = 0, length: int | None = None) -> bytes:
        if key.startswith("data/"):
            if threading.current_thread() is threading.main_thread():
                mine.append(key)
            time.sleep(0.02)  # a remote's latency: the loop catches up with the fetches
        return read(key, offset, length)

    monkeypatch.setattr(backend, "read", slow)
    days = [
        storage.get_backup(backup["backup_id"])["data_sources"]["ai_hub"]["day"]
        for backup in storage.list_backups(100)
    ]
    assert days == list(range(19, -1, -1))
    assert mine == []
    assert len(data_reads(reads)) == 20, data_reads(reads)  # each snapshot fetched once
    storage.close()


def test_a_view_kept_from_a_closed_read_ahead_reads_at_once(
    history: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing changed (the facade closed its read-ahead) while data_sources of an older
    get_backup were kept: reading one of them neither waits for a fetch that was dropped nor
    starts threads of its own."""
    import time

    from stcore.access import readahead

    repo = fresh(history, [], tmp_path, monkeypatch)
    manifests = repo.snapshots()
    backend = repo.backend
    read = backend.read

    def slow(key: str, offset: int = 0, length: int | None = None) -> bytes:
        if key.startswith("data/"):
            time.sleep(0.2)
        return read(key, offset, length)

    monkeypatch.setattr(backend, "read", slow)
    ahead = readahead.ReadAhead(repo.store, manifests)
    ahead.reading(manifests[0].id, "ai_hub")  # 17 scheduled: 8 running, the rest queued
    ahead.close()
    started = time.monotonic()
    ahead.reading(manifests[14].id, "ai_hub")  # queued, then dropped by close
    assert time.monotonic() - started < 1.0
    assert ahead._pool is None
    assert repo.snapshot(manifests[14].id).sources["ai_hub"].data["day"] == 5


def test_a_full_id_is_resolved_with_one_manifest_read_and_no_catalog(
    history: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [m.id for m in fresh(history, [], tmp_path / "a", monkeypatch).snapshots()]
    reads: Reads = []
    repo = fresh(history, reads, tmp_path / "b", monkeypatch)
    reads.clear()
    assert repo.snapshot(ids[7]).id == ids[7]
    assert [key for key, _, _ in reads if key.startswith("snapshots/")] == [f"snapshots/{ids[7]}"]
    assert repo._catalog is None  # nothing listed
    missing = ids[7][:-1] + ("0" if ids[7][-1] != "0" else "1")
    with pytest.raises(stcore.errors.SnapshotNotFoundError, match="no snapshot matches"):
        repo.snapshot(missing)  # not there: the catalog says what there is


def test_read_ahead_over_a_damaged_pack_loses_nothing_and_the_read_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stcore.access.readahead import ReadAhead
    from stcore.repo.format import object_key

    document = tmp_path / "hub.json"
    repository = stcore.init_repository(str(tmp_path / "repo"))
    with repository:
        for day in range(3):
            document.write_text(json.dumps({"day": day, "rows": list(range(3000))}))
            repository.backup([stcore.make_source("ai_hub", "json", {"path": str(document)})])
    repo = fresh(f"count://{tmp_path / 'repo'}", [], tmp_path, monkeypatch)
    manifests = repo.snapshots()
    damaged = repo.index[manifests[1].sources["ai_hub"].root]
    pack = tmp_path / "repo" / object_key("data", damaged.pack_id)
    body = bytearray(pack.read_bytes())
    body[damaged.offset + damaged.stored_length // 2] ^= 0x01  # one bit of its tree
    pack.chmod(0o600)
    pack.write_bytes(bytes(body))
    ahead = ReadAhead(repo.store, manifests)
    ahead.reading(manifests[0].id, "ai_hub")
    ahead.wait()
    assert ahead.errors and all(
        isinstance(e, stcore.errors.CorruptObjectError) for e in ahead.errors
    )
    assert repo.snapshot(manifests[2].id).sources["ai_hub"].data["day"] == 0  # the others read
    with pytest.raises(stcore.errors.CorruptObjectError, match=damaged.blob_id.hex()):
        repo.snapshot(manifests[1].id).sources["ai_hub"].data  # noqa: B018
