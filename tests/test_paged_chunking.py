"""Page-aligned chunking of SQLite databases: updating a few rows stores the pages that changed."""

from __future__ import annotations

import io
import random
import sqlite3
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

import stcore
from stcore.builtins.compressors import GzipCompressor, ZstdCompressor
from stcore.repo.chunker import Chunker, ChunkerParams
from stcore.repo.format import object_key
from stcore.repo.store import page_compressor
from stcore.repository import Repository
from stcore.streams import sqlite_page_size

WORDS = ["signal", "trust", "model", "agent", "score", "latency", "token", "market"]


def make_database(path: Path, rows: int, *, page_size: int = 4096, seed: int = 5) -> None:
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA page_size={page_size}")
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, agent TEXT, payload TEXT)")
    db.executemany(
        "INSERT INTO rows (agent, payload) VALUES (?, ?)",
        ((f"agent-{k % 97}", " ".join(rng.choices(WORDS, k=40))) for k in range(rows)),
    )
    db.commit()
    db.close()


def update_one_percent(path: Path, seed: int = 6) -> None:
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    total = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    ids = rng.sample(range(1, total + 1), total // 100)
    db.executemany(
        "UPDATE rows SET payload = ? WHERE id = ?", ((str(rng.random()), i) for i in ids)
    )
    db.commit()
    db.close()


def _stored(repo: Repository) -> int:
    return sum(info.size for info in repo.backend.list())


def _header(page_size_field: int) -> bytes:
    return b"SQLite format 3\x00" + page_size_field.to_bytes(2, "big") + bytes(82)


def test_the_header_declares_the_page_size() -> None:
    assert sqlite_page_size(_header(4096)) == 4096
    assert sqlite_page_size(_header(1)) == 65536  # how SQLite spells 64 KiB
    assert sqlite_page_size(_header(512), size=512 * 7) == 512


@pytest.mark.parametrize(
    ("header", "size"),
    [
        (_header(4096), 4096 * 3 + 1),  # not a whole number of pages: being written
        (_header(3000), None),  # not a power of two
        (_header(256), None),  # below SQLite's minimum
        (b"SQLite format 2\x00" + bytes(84), None),
        (b"SQLite", None),
        (b"", None),
    ],
)
def test_anything_else_is_not_paged(header: bytes, size: int | None) -> None:
    assert sqlite_page_size(header, size) is None


def test_runs_are_whole_pages_of_the_configured_size() -> None:
    assert Chunker(ChunkerParams()).run_size(4096) == 4096
    assert Chunker(ChunkerParams()).run_size(1024) == 4096
    assert Chunker(ChunkerParams()).run_size(65536) == 65536
    assert Chunker(ChunkerParams(page_run_size=10_000)).run_size(4096) == 12288


class _Dribble(io.RawIOBase):
    """A stream that hands out a few bytes per read and cannot peek."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data = data
        self._at = 0
        self._rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._rng.randint(1, 5000), len(self._data) - self._at)
        buffer[:n] = self._data[self._at : self._at + n]
        self._at += n
        return n


@settings(max_examples=30, deadline=None)
@given(pages=st.integers(0, 700), tail=st.integers(0, 4095), seed=st.integers(0, 2**16))
def test_page_runs_concatenate_to_the_input_and_stay_aligned(
    pages: int, tail: int, seed: int
) -> None:
    data = random.Random(seed).randbytes(pages * 4096 + tail)
    chunker = Chunker(ChunkerParams())
    # An explicit page size (as the sqlite source gives) through a stream of short reads.
    chunks = list(chunker.chunks(_Dribble(data, seed), None, page_size=4096))  # type: ignore[arg-type]
    assert b"".join(chunks) == data
    assert all(len(c) == 4096 for c in chunks[:-1])


def test_a_sqlite_file_in_a_directory_is_cut_on_pages(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_database(path, 6000)
    data = path.read_bytes()
    with open(path, "rb") as stream:
        chunks = list(Chunker(ChunkerParams()).chunks(stream, len(data)))
    assert b"".join(chunks) == data
    assert {len(c) for c in chunks} == {4096}


def test_bytes_that_only_start_like_sqlite_but_are_not_pages_use_content_chunks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "odd.bin"
    path.write_bytes(_header(4096) + random.Random(1).randbytes(3 * 1024 * 1024 + 7))
    with open(path, "rb") as stream:
        chunks = list(Chunker(ChunkerParams()).chunks(stream, path.stat().st_size))
    assert b"".join(chunks) == path.read_bytes()
    assert any(len(c) != 4096 for c in chunks)


@pytest.mark.parametrize("kind", ["files", "sqlite"])
def test_updating_one_percent_of_rows_stores_the_changed_pages_only(
    repo: Repository, tmp_path: Path, kind: str
) -> None:
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    db_path = source_dir / "state.db"
    make_database(db_path, 40_000)  # ~10 MiB, ~2,500 pages

    def back_up() -> None:
        if kind == "files":
            sources = stcore.sources_for_paths([str(source_dir)])
        else:
            sources = [stcore.make_source("db", "sqlite", {"path": str(db_path)})]
        repo.backup(sources)

    back_up()
    first = _stored(repo)
    before = db_path.read_bytes()
    update_one_percent(db_path)
    after = db_path.read_bytes()
    changed = sum(before[i : i + 4096] != after[i : i + 4096] for i in range(0, len(after), 4096))
    assert 0 < changed < len(after) // 4096 // 3  # a sparse, scattered update
    back_up()
    growth = _stored(repo) - first
    # Content-defined 1 MiB chunks would store nearly all of `first` again (every chunk holds
    # a changed page); page runs store about the changed share plus the page list.
    assert growth < first * 0.35
    restored = tmp_path / "restored"
    repo.restore("latest", restored)
    # both sources read a database through the online-backup API: the copy differs in header
    # counters; its rows must not
    assert _rows(restored / ("src" if kind == "files" else "db") / "state.db") == _rows(db_path)


def _rows(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT * FROM rows ORDER BY id").fetchall()
    finally:
        db.close()


def test_config_without_page_run_size_reads_as_the_default() -> None:
    params = ChunkerParams.from_json(
        {"algorithm": "fastcdc2020", "min_size": 1, "avg_size": 2, "max_size": 4, "seed": 0}
    )
    assert params.page_run_size == 4096
    assert ChunkerParams.from_json(ChunkerParams().to_json()) == ChunkerParams()


def _frames(repo: Repository, path: str) -> list[tuple[bytes, bytes]]:
    """(raw chunk, stored frame) for each chunk of ``path`` in the latest snapshot of an
    unencrypted repository."""
    store = repo.store
    root = repo.snapshot("latest").manifest.sources["data"].root
    (node,) = [n for n in store.read_tree(root) if n.name == path]
    out = []
    for blob_id in node.content:
        entry = store.index[blob_id]
        stored = store.read_object_range(
            object_key("data", entry.pack_id), entry.offset, entry.stored_length
        )
        out.append((repo.read_blob(blob_id), stored))
    return out


@pytest.mark.parametrize(("level", "page_level"), [(None, 4), (3, 3), (9, 9)])
def test_page_runs_compress_at_the_page_level_and_other_chunks_at_the_repositorys(
    tmp_path: Path, level: int | None, page_level: int
) -> None:
    """At the default level, a database's pages compress at zstd level 4 (smaller on 4 KiB
    inputs) and everything else at 3; a level the repository sets applies to both."""
    data = tmp_path / "data"
    data.mkdir()
    make_database(data / "state.db", 4000)
    (data / "notes.txt").write_text(" ".join(random.Random(3).choices(WORDS, k=200_000)))
    repo = stcore.init_repository(str(tmp_path / "repo"), compression_level=level)
    try:
        repo.backup([stcore.make_source("data", "files", {"path": str(data)})])
        pages, text = _frames(repo, "state.db"), _frames(repo, "notes.txt")
        assert len(pages) > 50 and len(text) > 1
        for chunks, expected in ((pages, page_level), (text, level or 3)):
            zstd = zstandard.ZstdCompressor(level=expected, write_content_size=True)
            assert [frame for _, frame in chunks] == [
                b"\x01" + zstd.compress(raw) for raw, _ in chunks
            ]
    finally:
        repo.close()


class _Faulty(ZstdCompressor):
    def __init__(self, pages: object) -> None:
        super().__init__()
        self._pages = pages

    def for_pages(self) -> ZstdCompressor:
        if isinstance(self._pages, Exception):
            raise self._pages
        return self._pages  # type: ignore[return-value]


@pytest.mark.parametrize(
    "pages", [RuntimeError("plugin bug"), GzipCompressor()], ids=["raises", "other-code"]
)
def test_a_faulty_for_pages_is_set_aside_and_pages_compress_as_usual(
    pages: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A plugin's for_pages() that fails, or whose frames would carry another code (which the
    repository's readers may not decode), is not used; the repository still opens."""
    assert page_compressor(_Faulty(pages)) is None
    assert "for_pages()" in caplog.text
    assert page_compressor(ZstdCompressor()).level == 4  # type: ignore[union-attr]
