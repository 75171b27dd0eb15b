"""The AI access layer: lazy seekable files, the bounded shared cache, catalog queries, the facade.

* ``SourceView.open(path)`` behaves like ``io.BytesIO`` of the original bytes under any sequence
  of seeks (every ``whence``), reads, ``readinto`` and ``tell`` on a file of many chunks;
* a cached repository keeps its object cache under ``STCORE_CACHE_MAX_BYTES`` while reading
  several times that, and two processes reading through one cache leave it intact;
* queries by date, source name, source type, tag, host and sync state on 200 snapshots are
  answered by the catalog without reading a single manifest, and ``Snapshot.sources`` fetches
  nothing until a source is used;
* ``cloud_storage.get_backup(id)["data_sources"][name]`` loads only that source, and a sqlite
  source's ``.connect()`` is a read-only connection to the backed-up rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from st_local.backend import LocalBackend

import stcore
from cloud_storage_manager import CloudStorageManager
from stcore.access.catalog import Catalog
from stcore.access.views import SnapshotFile
from stcore.registry import Registration
from stcore.repo.objectcache import ObjectCache
from stcore.repository import Repository
from stcore.sources import make_source

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent

# --- a backend that records every read (the pattern of tests/test_cache.py) ----------------------

Reads = list[tuple[str, int, int | None]]


class CountingBackend(LocalBackend):
    reads: Reads

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self.reads.append((key, offset, length))
        return super().read(key, offset, length)


def counting_host(reads: Reads) -> Any:
    """A plugin host where ``count:///path`` is a local directory that records every read."""

    def open_counting(url: str, *, options: Mapping[str, Any], create: bool = False) -> Any:
        backend = CountingBackend.open(
            url.replace("count://", "file://"), options=options, create=create
        )
        backend.reads = reads
        return backend

    def st_register_backends() -> list[Registration]:
        return [Registration(name="count", load=lambda: open_counting, schemes=("count",))]

    plugin = type(
        "Counting",
        (),
        {"st_register_backends": staticmethod(stcore.hookimpl(st_register_backends))},
    )
    return stcore.make_plugin_manager(extra_plugins=[("counting", plugin)])


# --- 2. a seekable file over many chunks behaves like BytesIO ------------------------------------

LARGE_SIZE = 12 * MiB


@pytest.fixture(scope="module")
def large_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Repository, bytes]]:
    """A local repository holding one 12 MiB file of random bytes (about a dozen chunks)."""
    base = tmp_path_factory.mktemp("large")
    data = random.Random(20240601).randbytes(LARGE_SIZE)
    (base / "src").mkdir()
    (base / "src" / "large.bin").write_bytes(data)
    cache_root = base / "cache"  # explicit: module fixtures run before the per-test environment
    writer = stcore.init_repository(str(base / "repo"), cache_root=cache_root)
    writer.backup(stcore.sources_for_paths([str(base / "src")]))
    writer.close()
    repo = stcore.open_repository(str(base / "repo"), cache_root=cache_root)
    yield repo, data
    repo.close()


def _open_large(repo: Repository) -> SnapshotFile:
    return repo.snapshot("latest").sources["src"].open("large.bin")


def test_large_file_spans_many_chunks(large_file: tuple[Repository, bytes]) -> None:
    repo, _ = large_file
    view = repo.snapshot("latest").sources["src"]
    info = view.info("large.bin")
    assert info.size == LARGE_SIZE and info.kind == "file"
    handle = view.open("large.bin")
    assert len(handle._ids) >= 5  # the property below crosses many chunk boundaries
    assert handle.size == LARGE_SIZE
    assert handle.readable() and handle.seekable() and not handle.writable()


Op = tuple[str, int, int]

OPERATIONS = st.one_of(
    # seek(offset, whence): offsets reach past both ends of the file
    st.tuples(
        st.just("seek"),
        st.integers(min_value=-LARGE_SIZE - 10, max_value=LARGE_SIZE + 10),
        st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END]),
    ),
    # seek near a chunk boundary or the end, where off-by-one errors live
    st.tuples(
        st.just("seek_end"),
        st.integers(min_value=-3 * MiB, max_value=3),
        st.just(io.SEEK_END),
    ),
    st.tuples(
        st.just("read"),
        st.one_of(
            st.integers(min_value=-1, max_value=64),
            st.integers(min_value=0, max_value=3 * MiB),
        ),
        st.just(0),
    ),
    st.tuples(st.just("readinto"), st.integers(min_value=0, max_value=2 * MiB), st.just(0)),
    st.tuples(st.just("tell"), st.just(0), st.just(0)),
)


@settings(max_examples=60, deadline=None)
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=25))
def test_random_seeks_and_reads_match_the_original(
    large_file: tuple[Repository, bytes], operations: list[Op]
) -> None:
    repo, data = large_file
    handle = _open_large(repo)
    expected = io.BytesIO(data)
    for op, value, whence in operations:
        if op in ("seek", "seek_end"):
            base = {io.SEEK_SET: 0, io.SEEK_CUR: expected.tell(), io.SEEK_END: len(data)}[whence]
            if base + value < 0:
                # BytesIO clamps a negative SEEK_CUR/SEEK_END target to 0, a real file raises;
                # SnapshotFile refuses it and stays where it was.
                before = handle.tell()
                with pytest.raises(ValueError):
                    handle.seek(value, whence)
                assert handle.tell() == before
                continue
            assert handle.seek(value, whence) == expected.seek(value, whence)
        elif op == "read":
            assert handle.read(value) == expected.read(value)
        elif op == "readinto":
            mine, theirs = bytearray(value), bytearray(value)
            assert handle.readinto(mine) == expected.readinto(theirs)
            assert mine == theirs
        assert handle.tell() == expected.tell()
    # whatever came before, the rest of the file reads right
    assert handle.read() == expected.read()
    assert handle.read() == b""


def test_eof_tell_seek_end_and_readinto(large_file: tuple[Repository, bytes]) -> None:
    repo, data = large_file
    with _open_large(repo) as handle:
        assert handle.read(0) == b"" and handle.tell() == 0
        assert handle.seek(0, io.SEEK_END) == LARGE_SIZE
        assert handle.read() == b"" and handle.read(10) == b""
        assert handle.readinto(bytearray(10)) == 0
        assert handle.seek(-5, io.SEEK_END) == LARGE_SIZE - 5
        assert handle.read(100) == data[-5:]
        assert handle.tell() == LARGE_SIZE
        assert handle.seek(100, io.SEEK_END) == LARGE_SIZE + 100  # past the end is allowed
        assert handle.read() == b"" and handle.tell() == LARGE_SIZE + 100
        handle.seek(3 * MiB - 7)
        buffer = bytearray(2 * MiB + 13)
        assert handle.readinto(memoryview(buffer)) == len(buffer)
        assert bytes(buffer) == data[3 * MiB - 7 : 5 * MiB + 6]
        assert handle.seek(-10, io.SEEK_CUR) == 5 * MiB - 4
        assert handle.read(20) == data[5 * MiB - 4 : 5 * MiB + 16]
        handle.seek(0)
        assert handle.readall() == data
    # a buffered wrapper, as libraries use it
    with io.BufferedReader(_open_large(repo), buffer_size=256 * 1024) as buffered:
        buffered.seek(LARGE_SIZE // 2)
        assert buffered.read(1000) == data[LARGE_SIZE // 2 : LARGE_SIZE // 2 + 1000]
        buffered.seek(0)
        assert buffered.read() == data


def test_seek_with_an_unsupported_whence_raises_value_error(
    large_file: tuple[Repository, bytes],
) -> None:
    repo, _ = large_file
    handle = _open_large(repo)
    with pytest.raises(ValueError):
        io.BytesIO(b"x").seek(0, 3)
    with pytest.raises(ValueError):
        handle.seek(0, 3)


def test_a_closed_file_refuses_io(large_file: tuple[Repository, bytes]) -> None:
    repo, _ = large_file
    handle = _open_large(repo)
    handle.close()
    assert handle.closed
    with pytest.raises(ValueError):
        handle.read(10)


def test_a_read_fetches_only_the_chunks_it_touches(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(LARGE_SIZE)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "large.bin").write_bytes(data)
    stcore.init_repository(str(tmp_path / "repo")).backup(
        stcore.sources_for_paths([str(tmp_path / "src")])
    )
    reads: Reads = []
    repo = stcore.open_repository(
        f"count://{tmp_path / 'repo'}", host=counting_host(reads), cache=False
    )
    handle = repo.snapshot("latest").sources["src"].open("large.bin")
    reads.clear()
    handle.seek(LARGE_SIZE // 2)
    assert handle.read(100) == data[LARGE_SIZE // 2 : LARGE_SIZE // 2 + 100]
    assert handle.read(100) == data[LARGE_SIZE // 2 + 100 : LARGE_SIZE // 2 + 200]
    data_reads = [r for r in reads if r[0].startswith("data/")]
    assert len(data_reads) == 1  # one chunk, fetched once, by a range read
    assert data_reads[0][2] is not None and data_reads[0][2] < 5 * MiB
    repo.close()


# --- 3. the object cache: bounded, and shared by processes -------------------------------------

CACHE_BOUND = 3 * MiB
BIG_SIZE = 10 * MiB + 12345


@pytest.fixture
def big_remote(tmp_path: Path) -> tuple[str, Path, bytes]:
    data = random.Random(99).randbytes(BIG_SIZE)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(data)
    writer = stcore.init_repository(str(tmp_path / "remote"), pack_size=2 * MiB)
    writer.backup(stcore.sources_for_paths([str(tmp_path / "src")]))
    writer.close()
    return f"count://{tmp_path / 'remote'}", tmp_path / "remote", data


def _cache_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                total += (Path(dirpath) / name).stat().st_size
            except FileNotFoundError:
                pass
    return total


def test_cache_stays_under_its_bound_while_reading_more(
    big_remote: tuple[str, Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, data = big_remote
    monkeypatch.setenv("STCORE_CACHE_MAX_BYTES", str(CACHE_BOUND))
    reads: Reads = []
    repo = stcore.open_repository(
        url, host=counting_host(reads), cache=True, cache_root=tmp_path / "cache"
    )
    cache = repo.object_cache
    assert cache is not None and cache.max_bytes == CACHE_BOUND
    # entries are written behind the reads, on the cache's writer thread: at any moment one
    # may be half written, on top of the bound
    in_flight = max(entry.stored_length for _, entry in repo.index.items())
    for round_ in range(2):
        handle = repo.snapshot("latest").sources["src"].open("big.bin")
        pieces = []
        peak = 0
        while piece := handle.read(256 * 1024):
            pieces.append(piece)
            peak = max(peak, _cache_bytes(cache.root))
            assert peak <= CACHE_BOUND + in_flight, f"round {round_}: cache holds {peak}"
            cache.drain()
            assert _cache_bytes(cache.root) <= CACHE_BOUND, f"round {round_}, written"
        assert b"".join(pieces) == data
    stored = sum(length or 0 for key, _, length in reads if key.startswith("data/"))
    assert stored > 2 * BIG_SIZE - CACHE_BOUND  # evicted entries had to be fetched again
    assert cache.stats()["entries"] > 0
    repo.close()


READER = """
import hashlib, os, sys, time
from pathlib import Path
import stcore
path, cache_root, rounds, role, sync = sys.argv[1:6]
sync = Path(sync)

def wait_for(marker):
    deadline = time.monotonic() + 60
    while not (sync / marker).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(marker)
        time.sleep(0.01)

if role == "hold":
    # Hold the first cache write between writing its temporary file and renaming it into place
    # until the other reader has finished: an in-flight write, as any slow disk can make one.
    real_replace = os.replace
    state = {"held": False}
    def replace(src, dst):
        if not state["held"]:
            state["held"] = True
            (sync / "holding").touch()
            wait_for("done")
        return real_replace(src, dst)
    os.replace = replace
elif role == "evict":
    wait_for("holding")
try:
    repo = stcore.open_repository(path, cache=True, cache_root=Path(cache_root))
    for _ in range(int(rounds)):
        handle = repo.snapshot("latest").sources["src"].open("big.bin")
        digest = hashlib.sha256()
        while piece := handle.read(300_000):
            digest.update(piece)
        print(digest.hexdigest(), flush=True)
    print(repo.cache_dir, flush=True)
finally:
    if role == "evict":
        (sync / "done").touch()
"""


def _run_readers(
    path: Path, cache_root: Path, roles: list[str], bound: int, rounds: int = 3
) -> list[tuple[int, str, str]]:
    sync = cache_root.parent / f"sync-{cache_root.name}"
    sync.mkdir()
    env = {**os.environ, "STCORE_CACHE_MAX_BYTES": str(bound)}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                READER,
                str(path),
                str(cache_root),
                str(rounds),
                role,
                str(sync),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for role in roles
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append((process.returncode, out, err))
    return results


def _verify_cache_entries(path: Path, cache_root: Path, data: bytes) -> Path:
    """Every entry in the cache verifies: read again, it is served from the cache, right bytes."""
    reads: Reads = []
    repo = stcore.open_repository(
        f"count://{path}", host=counting_host(reads), cache=True, cache_root=cache_root
    )
    objects = repo.cache_dir / "objects"
    files = [p for p in objects.rglob("*") if p.is_file()]
    assert files and not [p.name for p in files if p.name.endswith(".tmp")]  # none left over
    node = repo.snapshot("latest").sources["src"]._file("big.bin")
    assert repo.store.object_cache is not None
    repo.store.object_cache.drain()  # the trees just read are written behind: not half-written
    chunks: dict[str, bytes] = {}
    offset = 0
    for blob_id in node.content:
        length = repo.index[blob_id].raw_length
        chunks[blob_id.hex()] = data[offset : offset + length]
        offset += length
    cached = [p.name for p in (objects / "blob").rglob("*") if p.is_file()]
    assert [name for name in cached if name in chunks]
    reads.clear()
    for name in cached:
        blob = repo.read_blob(bytes.fromhex(name))
        if name in chunks:
            assert blob == chunks[name]
    assert [key for key, _, _ in reads if key.startswith("data/")] == []  # none was refetched
    repo.close()
    return objects


def test_two_processes_reading_through_one_cache_do_not_corrupt_it(
    big_remote: tuple[str, Path, bytes], tmp_path: Path
) -> None:
    """Both read the whole file three times at once; the cache holds it all (no eviction)."""
    _, path, data = big_remote
    cache_root = tmp_path / "shared-cache"
    # The catalog is created first: two processes creating it at once is the bug of
    # test_two_processes_can_create_the_catalog_at_once (about one run in twelve fails).
    stcore.open_repository(str(path), cache=True, cache_root=cache_root).snapshot("latest")
    results = _run_readers(path, cache_root, ["plain", "plain"], bound=64 * MiB)
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    expected = hashlib.sha256(data).hexdigest()
    for _, out, _ in results:
        assert out.split()[:3] == [expected] * 3  # every whole read got the right bytes
    objects = _verify_cache_entries(path, cache_root, data)
    assert _cache_bytes(objects) <= 64 * MiB


def test_two_processes_evicting_from_one_small_cache_both_read_right(
    big_remote: tuple[str, Path, bytes], tmp_path: Path
) -> None:
    """With a 3 MiB bound one reader evicts while the other has a cache write in flight.

    Without the handshake the same failure shows in about one run in six; the handshake makes
    the interleaving certain: "hold" pauses its first write between temp file and rename until
    "evict" has read the file three times (evicting as it goes).
    """
    _, path, data = big_remote
    cache_root = tmp_path / "small-cache"
    results = _run_readers(path, cache_root, ["hold", "evict"], bound=CACHE_BOUND)
    expected = hashlib.sha256(data).hexdigest()
    assert results[1][0] == 0, results[1][2]
    assert results[1][1].split()[:3] == [expected] * 3
    objects = _verify_cache_entries(path, cache_root, data)  # nothing in the cache is corrupt
    largest = max(p.stat().st_size for p in objects.rglob("*") if p.is_file())
    assert _cache_bytes(objects) <= CACHE_BOUND + 2 * largest
    assert results[0][0] == 0, results[0][2][-600:]  # the reader whose write was in flight
    assert results[0][1].split()[:3] == [expected] * 3


def test_the_bound_holds_within_one_entry_per_writer_with_two_writers(tmp_path: Path) -> None:
    # Two ObjectCache instances on one directory are two processes: all their state (the size
    # estimate, the lock) is per instance. The interleaving is made deterministic.
    bound, entry = 100_000, 10_000
    root = tmp_path / "shared"
    late, early = ObjectCache(root, bound), ObjectCache(root, bound)
    late.put("blob", "late-0", os.urandom(entry))  # its estimate is taken on a near-empty cache
    for i in range(10):
        early.put("blob", f"early-{i}", os.urandom(entry))  # fills the cache to its bound
        assert _cache_bytes(root) <= bound + 2 * entry
    for i in range(1, 12):
        late.put("blob", f"late-{i}", os.urandom(entry))
        assert _cache_bytes(root) <= bound + 2 * entry, f"after {i} more puts"


def test_two_processes_can_create_the_catalog_at_once(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process is creating the catalog right now
    other.execute("CREATE TABLE IF NOT EXISTS placeholder (x)")  # holds the write lock
    timer = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        catalog = Catalog(path)  # must wait for the other writer, as its busy timeout says
    finally:
        timer.join()
        other.close()
    assert catalog.ids() == set()
    catalog.close()


# --- 4. queries on 200 snapshots answered by the catalog alone ---------------------------------

SOURCE_KINDS = [
    ("ai_hub", "json"),
    ("models", "files"),
    ("metrics", "sqlite"),
    ("logs", "files"),
    ("settings", "json"),
]
HOSTS = ["alpha", "beta", "gamma"]
TAG_POOL = ["daily", "weekly", "manual", "pre-upgrade"]


def _tiny_inputs(base: Path) -> dict[str, str]:
    base.mkdir()
    (base / "ai_hub.json").write_text(json.dumps({"signals": [1, 2, 3]}))
    (base / "settings.json").write_text(json.dumps({"theme": "dark"}))
    (base / "models").mkdir()
    (base / "models" / "w.bin").write_bytes(b"weights")
    (base / "logs").mkdir()
    (base / "logs" / "app.log").write_text("started\n")
    with sqlite3.connect(base / "metrics.db") as db:
        db.execute("CREATE TABLE m (k TEXT, v INTEGER)")
        db.execute("INSERT INTO m VALUES ('a', 1)")
    db.close()
    return {
        "ai_hub": str(base / "ai_hub.json"),
        "settings": str(base / "settings.json"),
        "models": str(base / "models"),
        "logs": str(base / "logs"),
        "metrics": str(base / "metrics.db"),
    }


def test_queries_on_200_snapshots_read_no_manifest(tmp_path: Path) -> None:
    paths = _tiny_inputs(tmp_path / "in")
    reads: Reads = []
    url = f"count://{tmp_path / 'repo'}"
    host = counting_host(reads)
    repo = stcore.init_repository(url, host=host)
    repo.catalog  # noqa: B018 - open the catalog so each backup adds its row
    rng = random.Random(200)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    made: list[dict[str, Any]] = []
    began = time.monotonic()
    for i in range(200):
        chosen = sorted(rng.sample(SOURCE_KINDS, rng.randint(1, 3)))
        tags = sorted(rng.sample(TAG_POOL, rng.randint(0, 2)))
        when = start + dt.timedelta(hours=7 * i, minutes=rng.randint(0, 59))
        hostname = HOSTS[i % len(HOSTS)]
        sources = [make_source(n, t, {"path": paths[n]}, host=host) for n, t in chosen]
        result = repo.backup(sources, time=when, tags=tags, hostname=hostname)
        made.append(
            {
                "id": result.manifest.id,
                "time": when,
                "sources": dict(chosen),
                "tags": set(tags),
                "host": hostname,
            }
        )
    backup_seconds = time.monotonic() - began
    synced_ids = [m["id"] for m in made if rng.random() < 0.3]
    repo.catalog.mark_synced(synced_ids, "cloud", dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    repo.catalog.mark_synced(synced_ids[:5], "offsite", dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
    repo.close()
    assert backup_seconds < 60

    fresh = stcore.open_repository(url, host=host, cache=False)  # a new process, warm catalog
    reads.clear()

    def expect(keep: Any) -> list[str]:
        chosen = [m for m in made if keep(m)]
        chosen.sort(key=lambda m: (m["time"], m["id"]), reverse=True)
        return [m["id"] for m in chosen]

    def ids(**filters: Any) -> list[str]:
        return [m.id for m in fresh.query(**filters)]

    since, until = start + dt.timedelta(days=10), start + dt.timedelta(days=30)
    synced = set(synced_ids)
    cases = [
        ({}, lambda m: True),
        ({"since": since, "until": until}, lambda m: since <= m["time"] <= until),
        ({"since": since}, lambda m: m["time"] >= since),
        ({"until": until}, lambda m: m["time"] <= until),
        ({"source": "ai_hub"}, lambda m: "ai_hub" in m["sources"]),
        ({"source": "metrics"}, lambda m: "metrics" in m["sources"]),
        ({"type": "sqlite"}, lambda m: "sqlite" in m["sources"].values()),
        ({"type": "json"}, lambda m: "json" in m["sources"].values()),
        # both filters hold for the snapshot (its models source and some json source)
        (
            {"source": "models", "type": "json"},
            lambda m: "models" in m["sources"] and "json" in m["sources"].values(),
        ),
        ({"tags": ["manual"]}, lambda m: "manual" in m["tags"]),
        ({"tags": ["daily", "weekly"]}, lambda m: {"daily", "weekly"} <= m["tags"]),
        ({"host": "beta"}, lambda m: m["host"] == "beta"),
        ({"synced": True}, lambda m: m["id"] in synced),
        ({"synced": False}, lambda m: m["id"] not in synced),
        ({"synced": True, "remote": "offsite"}, lambda m: m["id"] in synced_ids[:5]),
        ({"synced": False, "remote": "offsite"}, lambda m: m["id"] not in synced_ids[:5]),
        (
            {"since": since, "source": "logs", "tags": ["daily"], "synced": False},
            lambda m: (
                m["time"] >= since
                and "logs" in m["sources"]
                and "daily" in m["tags"]
                and m["id"] not in synced
            ),
        ),
        ({"type": "files", "limit": 7}, lambda m: "files" in m["sources"].values()),
    ]
    for filters, keep in cases:
        want = expect(keep)
        if "limit" in filters:
            want = want[: filters["limit"]]
        assert ids(**filters) == want, filters
    # the filters are not vacuous
    assert 0 < len(ids(since=since, until=until)) < 200
    assert 0 < len(ids(synced=True)) < 200 and 0 < len(ids(type="sqlite")) < 200
    assert fresh.resolve("latest").id == made[-1]["id"]

    # Snapshot.sources fetches nothing until a source is used
    target = next(m for m in made if "metrics" in m["sources"] and len(m["sources"]) > 1)
    snapshot = fresh.snapshot(target["id"])
    sources = snapshot.sources
    assert sorted(sources) == sorted(target["sources"]) and len(sources) == len(target["sources"])
    view = sources["metrics"]
    assert view.type == "sqlite" and view.summary.files == 1
    assert set(snapshot.tags) == target["tags"] and snapshot.host == target["host"]
    object_reads = [key for key, _, _ in reads]
    assert object_reads == [], object_reads  # not a manifest, tree, index or pack was read
    assert [f.path for f in view.files()] == ["metrics.db"]
    assert reads and not [key for key, _, _ in reads if key.startswith("snapshots/")]
    fresh.close()


# --- 5. the facade: lazy data_sources, read-only sqlite ------------------------------------------


def original_blob_tree(repo: Repository, tree_id: bytes) -> list[Any]:
    """A tree's nodes read past any instrumentation on ``repo.read_blob``."""
    from stcore.repo.format import decode_tree

    return decode_tree(Repository.read_blob(repo, tree_id))


def test_facade_loads_only_the_source_asked_for_and_connects_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "app"
    (app / "data" / "models").mkdir(parents=True)
    (app / "data" / "ai_hub.json").write_text(json.dumps({"signals": [1, 2, 3], "n": "x" * 5000}))
    (app / "data" / "models" / "weights.bin").write_bytes(os.urandom(3 * MiB))
    with sqlite3.connect(app / "data" / "metrics.db") as db:
        db.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, name TEXT, value REAL)")
        db.executemany(
            "INSERT INTO readings (name, value) VALUES (?, ?)",
            [(f"sensor-{i}", i * 0.5) for i in range(500)],
        )
    db.close()
    (app / "stcore.toml").write_text(
        """
[repository]
url = "backups"

[sources.ai_hub]
type = "json"
path = "data/ai_hub.json"

[sources.models]
type = "files"
path = "data/models"

[sources.metrics]
type = "sqlite"
path = "data/metrics.db"
"""
    )
    monkeypatch.chdir(app)
    storage = CloudStorageManager()
    storage.init_repository()  # the facade never creates one itself
    result = storage.backup_all_data()
    assert result["success"] is True, result
    backup_id = result["backup_id"]
    backup = storage.get_backup(backup_id)
    assert backup is not None
    repo = storage.repository
    manifest = repo.resolve(backup_id)

    blobs_read: list[bytes] = []
    keys_read: list[str] = []
    original_blob, original_read = repo.store.read_blob, repo.backend.read

    def read_blob(blob_id: bytes) -> bytes:
        blobs_read.append(blob_id)
        return original_blob(blob_id)

    def backend_read(key: str, offset: int = 0, length: int | None = None) -> bytes:
        keys_read.append(key)
        return original_read(key, offset, length)

    monkeypatch.setattr(repo.store, "read_blob", read_blob)
    monkeypatch.setattr(repo.backend, "read", backend_read)
    data_sources = backup["data_sources"]
    assert sorted(data_sources) == ["ai_hub", "metrics", "models"]
    assert blobs_read == [] and keys_read == []  # nothing fetched before a source is used

    assert data_sources["ai_hub"] == {"signals": [1, 2, 3], "n": "x" * 5000}
    blobs_read_ai, keys_read_ai = list(blobs_read), list(keys_read)
    ai_hub = manifest.sources["ai_hub"]
    own = {ai_hub.root}
    for node in original_blob_tree(repo, ai_hub.root):
        own.update(node.content)
    assert set(blobs_read_ai) <= own and ai_hub.root in blobs_read_ai
    # its tree, then its one document (in a bulk read, which read_blob does not see)
    assert len(keys_read_ai) == 2 and all(k.startswith("data/") for k in keys_read_ai)
    blobs_read.clear()
    keys_read.clear()
    assert data_sources["ai_hub"]["signals"] == [1, 2, 3]  # loaded once, then kept
    assert blobs_read == []

    metrics = data_sources["metrics"]
    connection = metrics.connect()
    try:
        rows = connection.execute("SELECT name, value FROM readings ORDER BY id").fetchall()
        assert rows == [(f"sensor-{i}", i * 0.5) for i in range(500)]
        with pytest.raises(sqlite3.OperationalError):
            connection.execute("INSERT INTO readings (name, value) VALUES ('evil', 1)")
        with pytest.raises(sqlite3.OperationalError):
            connection.execute("DELETE FROM readings")
        with pytest.raises(sqlite3.OperationalError):
            connection.execute("CREATE TABLE t (x)")
    finally:
        connection.close()
    models_root = manifest.sources["models"].root
    assert models_root not in blobs_read  # the sqlite source never touched the files source
    again = metrics.connect()  # materialised once, then reused
    assert again.execute("SELECT COUNT(*) FROM readings").fetchone() == (500,)
    again.close()
    # the original database is untouched and the backed-up copy did not change
    with sqlite3.connect(app / "data" / "metrics.db") as db:
        assert db.execute("SELECT COUNT(*) FROM readings").fetchone() == (500,)
    db.close()
    storage.close()


def test_connect_refuses_a_file_that_is_not_a_database_before_copying_it(
    tmp_path: Path,
) -> None:
    from stcore.errors import NotADatabaseError

    source = tmp_path / "files"
    source.mkdir()
    (source / "notes.db").write_bytes(b"not sqlite at all\n" * 200_000)  # 3.6 MB, many chunks
    repository = stcore.init_repository(str(tmp_path / "repo"))
    repository.backup(stcore.sources_for_paths([str(source)]))
    view = repository.snapshot("latest").sources["files"]
    with pytest.raises(NotADatabaseError, match="is not a SQLite database"):
        view.connect("notes.db")
    copies = repository.cache_dir / "sqlite"
    assert not copies.exists() or not any(copies.iterdir())
