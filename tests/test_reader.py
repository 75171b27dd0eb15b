"""The bulk blob reader: one range read per run of neighbouring blobs, verified, cache-aware."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import stcore
from stcore.errors import CorruptObjectError
from stcore.models import IndexEntry
from stcore.repo.chunker import ChunkerParams
from stcore.repo.format import object_key
from stcore.repo.reader import BlobReader, PackRange, plan_ranges, read_in_order
from stcore.repository import Repository

#: chunks of about 256 bytes, so a few hundred KiB of files make thousands of blobs
SMALL_CHUNKS = ChunkerParams(min_size=64, avg_size=256, max_size=1024)
SMALL_PACKS = 64 * 1024

Read = tuple[str, int, int | None]


def small_blob_repository(
    path: Path, source: Path, *, files: int = 40, seed: int = 1
) -> Repository:
    """A local repository with one snapshot of ``files`` random files cut into tiny blobs."""
    rng = random.Random(seed)
    source.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (source / f"f{i:03}.bin").write_bytes(rng.randbytes(rng.randint(0, 12_000)))
    repo = stcore.init_repository(str(path), chunker=SMALL_CHUNKS, pack_size=SMALL_PACKS)
    repo.backup(stcore.sources_for_paths([str(source)]))
    return repo


def count_reads(repo: Repository) -> list[Read]:
    """Record every backend read of ``repo`` (the backend's ``read`` is wrapped, nothing else)."""
    reads: list[Read] = []
    lock = threading.Lock()
    original = repo.backend.read

    def read(key: str, offset: int = 0, length: int | None = None) -> bytes:
        with lock:
            reads.append((key, offset, length))
        return original(key, offset, length)

    repo.backend.read = read  # type: ignore[method-assign]
    return reads


def data_reads(reads: list[Read]) -> list[Read]:
    return [r for r in reads if r[0].startswith("data/")]


def data_entries(repo: Repository) -> list[IndexEntry]:
    return sorted(
        (e for e in repo.index.values() if e.blob_type == "data"),
        key=lambda e: (e.pack_id, e.offset),
    )


@pytest.fixture
def small_repo(tmp_path: Path) -> Iterator[Repository]:
    writer = small_blob_repository(tmp_path / "repo", tmp_path / "src")
    writer.close()
    repo = stcore.open_repository(str(tmp_path / "repo"))
    yield repo
    repo.close()


def _entry(pack: int, offset: int, length: int) -> IndexEntry:
    return IndexEntry(
        blob_id=bytes([pack, offset % 251, offset // 251 % 251]) + bytes(29),
        blob_type="data",
        pack_id=bytes([pack]) * 32,
        offset=offset,
        stored_length=length,
        raw_length=length,
    )


# --- planning ------------------------------------------------------------------------------------


def test_neighbours_coalesce_and_gaps_above_the_threshold_split() -> None:
    a, b, c = _entry(1, 0, 100), _entry(1, 150, 100), _entry(1, 1000, 100)
    ranges = plan_ranges([c, a, b], max_gap=50)
    assert [(r.offset, r.length) for r in ranges] == [(0, 250), (1000, 100)]
    assert ranges[0].entries == (a, b)
    assert [(r.offset, r.length) for r in plan_ranges([a, b, c], max_gap=750)] == [(0, 1100)]
    assert len(plan_ranges([a, b, c], max_gap=0)) == 3


def test_packs_stay_apart_and_come_in_the_order_first_asked() -> None:
    first, second = _entry(2, 0, 10), _entry(1, 10, 10)
    ranges = plan_ranges([first, second, _entry(2, 10, 10)])
    assert [r.pack_id[0] for r in ranges] == [2, 1]
    assert ranges[0].key == object_key("data", bytes([2]) * 32)


def test_a_range_never_grows_past_its_maximum_but_one_long_blob_gets_its_own() -> None:
    entries = [_entry(1, i * 100, 100) for i in range(10)]
    ranges = plan_ranges(entries, max_length=300)
    assert [r.length for r in ranges] == [300, 300, 300, 100]
    (alone,) = plan_ranges([_entry(1, 0, 1000)], max_length=300)
    assert alone.length == 1000


def test_a_blob_asked_for_twice_is_covered_once() -> None:
    a = _entry(1, 0, 100)
    (only,) = plan_ranges([a, a, a])
    assert only.entries == (a,)


# --- reading -------------------------------------------------------------------------------------


def test_read_blobs_reads_each_pack_once_and_verifies_every_blob(small_repo: Repository) -> None:
    entries = data_entries(small_repo)
    packs = {e.pack_id for e in entries}
    assert len(entries) > 500 and len(packs) > 3
    expected = {e.blob_id: small_repo.read_blob(e.blob_id) for e in entries}
    reads = count_reads(small_repo)
    got = list(small_repo.read_blobs(e.blob_id for e in entries))
    assert dict(got) == expected and len(got) == len(entries)
    keys = [key for key, _, _ in data_reads(reads)]
    assert len(keys) == len(set(keys)) <= len(packs)  # at most one read per pack


def test_duplicated_ids_are_read_once_and_yielded_as_often_as_asked(
    small_repo: Repository,
) -> None:
    a, b = data_entries(small_repo)[:2]
    expected = small_repo.read_blob(a.blob_id)
    reads = count_reads(small_repo)
    got = list(small_repo.read_blobs([a.blob_id, b.blob_id, a.blob_id, a.blob_id]))
    assert len(data_reads(reads)) == 1  # neighbours in one pack: one range
    assert sorted(blob_id for blob_id, _ in got) == sorted([a.blob_id, b.blob_id, *[a.blob_id] * 2])
    assert [data for blob_id, data in got if blob_id == a.blob_id] == [expected] * 3


def test_gaps_larger_than_the_threshold_split_reads(small_repo: Repository) -> None:
    entries = data_entries(small_repo)
    pack = entries[0].pack_id
    every_other = [e for e in entries if e.pack_id == pack][::2]
    assert len(every_other) > 10
    expected = {e.blob_id: small_repo.read_blob(e.blob_id) for e in every_other}
    reads = count_reads(small_repo)
    assert dict(BlobReader(small_repo.store).read_blobs(expected)) == expected
    assert len(data_reads(reads)) == 1  # the skipped blobs are small gaps: one request
    reads.clear()
    apart = BlobReader(small_repo.store, max_gap=0)  # any gap splits
    assert dict(apart.read_blobs(expected)) == expected
    assert sorted((offset, length) for _, offset, length in data_reads(reads)) == [
        (e.offset, e.stored_length) for e in every_other
    ]


def test_read_in_order_keeps_the_order_asked_across_windows(small_repo: Repository) -> None:
    entries = data_entries(small_repo)
    ids = [e.blob_id for e in reversed(entries)] + [entries[3].blob_id]
    expected = [small_repo.read_blob(blob_id) for blob_id in ids]
    assert list(read_in_order(small_repo, ids, window=2000)) == expected
    assert list(read_in_order(small_repo, ids)) == expected
    assert list(read_in_order(small_repo, [])) == []


def test_an_unknown_blob_fails_before_anything_is_read(small_repo: Repository) -> None:
    known = data_entries(small_repo)[0].blob_id
    reads = count_reads(small_repo)
    with pytest.raises(CorruptObjectError, match=r"not in the index .*stcore check"):
        list(small_repo.read_blobs([known, bytes(32)]))
    assert data_reads(reads) == []


def test_ranges_in_flight_stay_within_the_read_ahead(small_repo: Repository) -> None:
    reader = BlobReader(small_repo.store, workers=8, max_gap=0, read_ahead=1)
    ranges = reader.plan(e.blob_id for e in data_entries(small_repo)[:80:2])  # all apart
    running, peak = [0], [0]
    lock = threading.Lock()

    def task(rng: PackRange) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
        return rng.length

    assert len(ranges) == 40
    assert sum(reader.run(ranges, task)) == sum(r.length for r in ranges)
    assert peak[0] == 1  # a budget of one byte still lets exactly one range run
    wide = BlobReader(small_repo.store, workers=4, max_gap=0)
    running[0] = peak[0] = 0
    assert sorted(wide.run(ranges, task)) == sorted(r.length for r in ranges)
    assert peak[0] <= 4


def test_an_error_in_one_range_stops_the_rest(small_repo: Repository) -> None:
    reader = BlobReader(small_repo.store, workers=2, max_gap=0)
    ranges = reader.plan(e.blob_id for e in data_entries(small_repo)[:100:2])
    started: list[PackRange] = []

    def task(rng: PackRange) -> None:
        started.append(rng)
        if len(started) == 3:
            raise OSError("network down")
        time.sleep(0.001)

    with pytest.raises(OSError, match="network down"):
        list(reader.run(ranges, task))
    assert len(started) < len(ranges)


# --- damage --------------------------------------------------------------------------------------


def _damage_middle_of_a_pack(repo: Repository) -> tuple[str, IndexEntry]:
    """Flip one byte inside a blob in the middle of a pack; return the pack key and that blob."""
    entries = data_entries(repo)
    in_pack = [e for e in entries if e.pack_id == entries[0].pack_id]
    victim = in_pack[len(in_pack) // 2]
    key = object_key("data", victim.pack_id)
    path = Path(repo.location) / key
    body = bytearray(path.read_bytes())
    body[victim.offset + victim.stored_length // 2] ^= 0xFF
    path.write_bytes(bytes(body))
    return key, victim


def test_a_corrupted_blob_inside_a_coalesced_range_names_pack_and_blob(
    small_repo: Repository,
) -> None:
    key, victim = _damage_middle_of_a_pack(small_repo)
    ids = [e.blob_id for e in data_entries(small_repo) if e.pack_id == victim.pack_id]
    reads = count_reads(small_repo)
    with pytest.raises(CorruptObjectError) as caught:
        list(small_repo.read_blobs(ids))
    assert f"pack {key}, blob {victim.blob_id.hex()}" in str(caught.value)
    assert len(data_reads(reads)) == 1  # it was in the one coalesced read


def test_a_truncated_pack_says_so(small_repo: Repository) -> None:
    entries = data_entries(small_repo)
    key = object_key("data", entries[0].pack_id)
    path = Path(small_repo.location) / key
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptObjectError, match=rf"{key} is truncated"):
        list(small_repo.read_blobs(e.blob_id for e in entries))


# --- the object cache ----------------------------------------------------------------------------


@pytest.fixture
def cached_repo(tmp_path: Path) -> Iterator[Repository]:
    small_blob_repository(tmp_path / "repo", tmp_path / "src").close()
    repo = stcore.open_repository(str(tmp_path / "repo"), cache=True, cache_root=tmp_path / "c")
    assert repo.object_cache is not None
    yield repo
    repo.close()


def test_a_second_bulk_read_comes_from_the_cache(cached_repo: Repository) -> None:
    entries = data_entries(cached_repo)
    ids = [e.blob_id for e in entries]
    reads = count_reads(cached_repo)
    first = dict(cached_repo.read_blobs(ids))
    assert 0 < len(data_reads(reads)) <= len({e.pack_id for e in entries})
    reads.clear()
    assert dict(cached_repo.read_blobs(ids)) == first
    assert data_reads(reads) == []


def test_cached_blobs_are_not_fetched_again(cached_repo: Repository) -> None:
    entries = data_entries(cached_repo)
    cached_pack = entries[0].pack_id
    for entry in entries:
        if entry.pack_id == cached_pack:
            cached_repo.read_blob(entry.blob_id)  # now in the cache
    reads = count_reads(cached_repo)
    got = dict(cached_repo.read_blobs(e.blob_id for e in entries))
    assert len(got) == len({e.blob_id for e in entries})
    assert object_key("data", cached_pack) not in {key for key, _, _ in reads}


def test_a_damaged_cache_entry_is_dropped_and_fetched_again(cached_repo: Repository) -> None:
    entry = data_entries(cached_repo)[5]
    good = cached_repo.read_blob(entry.blob_id)
    cache = cached_repo.object_cache
    assert cache is not None
    cache.drain()  # entries are written behind reads
    path = cache.root / "blob" / entry.blob_id.hex()[:2] / entry.blob_id.hex()
    path.write_bytes(b"garbage")
    reads = count_reads(cached_repo)
    assert dict(cached_repo.read_blobs([entry.blob_id, entry.blob_id])) == {entry.blob_id: good}
    assert len(data_reads(reads)) == 1
    cache.drain()
    assert path.read_bytes() != b"garbage"  # the good frame replaced it


def test_encrypted_repositories_read_in_bulk(tmp_path: Path) -> None:
    from stcore.repo.keys import KdfParams

    source = tmp_path / "src"
    source.mkdir()
    (source / "a").write_bytes(random.Random(3).randbytes(20_000))
    repo = stcore.init_repository(
        str(tmp_path / "repo"),
        encryption="aes-256-gcm",
        password="correct horse battery staple",
        kdf=KdfParams(memory_kib=1024, iterations=1, lanes=1),
        chunker=SMALL_CHUNKS,
        pack_size=SMALL_PACKS,
    )
    repo.backup(stcore.sources_for_paths([str(source)]))
    view = repo.snapshot("latest").sources["src"]
    assert view.info("a").size == 20_000
    reads = count_reads(repo)
    assert view.read_bytes("a") == (source / "a").read_bytes()
    packs = {e.pack_id for e in data_entries(repo)}
    assert len(data_entries(repo)) > 20 and len(data_reads(reads)) <= len(packs)
    repo.close()


# --- the lazy views read in bulk -----------------------------------------------------------------


def test_a_file_of_many_small_blobs_costs_a_read_per_pack_and_small_reads_stay_small(
    tmp_path: Path,
) -> None:
    data = random.Random(9).randbytes(300_000)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(data)
    stcore.init_repository(
        str(tmp_path / "repo"), chunker=SMALL_CHUNKS, pack_size=SMALL_PACKS
    ).backup(stcore.sources_for_paths([str(tmp_path / "src")]))
    repo = stcore.open_repository(str(tmp_path / "repo"))
    view = repo.snapshot("latest").sources["src"]
    content = view._file("big.bin").content
    packs = {repo.index[blob_id].pack_id for blob_id in content}
    assert len(content) > 500 and len(packs) > 3
    reads = count_reads(repo)
    assert view.read_bytes("big.bin") == data
    assert len(data_reads(reads)) <= len(packs)
    reads.clear()
    with view.open("big.bin") as handle:
        handle.seek(150_000)
        assert handle.read(100) == data[150_000:150_100]  # one or two chunks: one small read
        assert len(data_reads(reads)) == 1 and (data_reads(reads)[0][2] or 0) < 4096
        reads.clear()
        handle.seek(10_000)
        assert handle.read(200_000) == data[10_000:210_000]  # spans hundreds of chunks
        assert len(data_reads(reads)) <= len(packs)
        reads.clear()
        assert handle.read(50) == data[210_000:210_050]  # from the chunk kept by the last read
        handle.seek(0)
        assert handle.read() == data
    repo.close()


def test_connect_materialises_a_database_of_many_blobs_with_few_reads(tmp_path: Path) -> None:
    import sqlite3

    database = tmp_path / "app.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        rng = random.Random(4)
        rows = [(rng.randbytes(100).hex(),) for _ in range(2000)]  # ~400 KiB, no two pages alike
        db.executemany("INSERT INTO t (body) VALUES (?)", rows)
    db.close()
    repo = stcore.init_repository(
        str(tmp_path / "repo"), chunker=SMALL_CHUNKS, pack_size=SMALL_PACKS
    )
    repo.backup([stcore.make_source("db", "sqlite", {"path": str(database)})])
    packs = {e.pack_id for e in data_entries(repo)}
    assert len(data_entries(repo)) > 80
    reads = count_reads(repo)
    connection = repo.snapshot("latest").sources["db"].connect()
    try:
        assert connection.execute("SELECT COUNT(*) FROM t").fetchone() == (2000,)
    finally:
        connection.close()
    trees = {
        (object_key("data", e.pack_id), e.offset)
        for e in repo.index.values()
        if e.blob_type == "tree"
    }
    data_only = [r for r in data_reads(reads) if (r[0], r[1]) not in trees]
    assert len(data_only) <= len(packs)
    repo.close()
