"""The files cache: unchanged files are not read again; anything that changed is."""

from __future__ import annotations

import os
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stcore
from stcore.builtins import sources as builtin_sources
from stcore.repo.filescache import FilesCache, NewRows, RecordedFiles
from stcore.repository import Repository


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file the files source opens during a backup."""
    paths: list[str] = []
    real = builtin_sources.open_scanned

    def counting(path: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        paths.append(os.path.basename(path))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtin_sources, "open_scanned", counting)
    return paths


def _old_tree(root: Path) -> Path:
    root.mkdir()
    for i in range(5):
        (root / f"f{i}").write_bytes(os.urandom(50_000))
        old = time.time_ns() - 10 * 1_000_000_000
        os.utime(root / f"f{i}", ns=(old, old))
    return root


def _backup(repo: Repository, root: Path) -> stcore.BackupResult:
    return repo.backup(stcore.sources_for_paths([str(root)]))


def test_an_unchanged_file_is_not_read_again(
    repo: Repository, tmp_path: Path, opened: list[str]
) -> None:
    root = _old_tree(tmp_path / "src")
    first = _backup(repo, root)
    assert sorted(opened) == [f"f{i}" for i in range(5)]
    opened.clear()
    second = _backup(repo, root)
    assert opened == []
    assert second.manifest.sources["src"].root == first.manifest.sources["src"].root
    repo.restore(second.manifest.id, tmp_path / "out")
    for i in range(5):
        assert (tmp_path / "out" / "src" / f"f{i}").read_bytes() == (root / f"f{i}").read_bytes()


def test_a_file_rewritten_with_its_old_size_and_mtime_is_read_again(
    repo: Repository, tmp_path: Path, opened: list[str]
) -> None:
    root = _old_tree(tmp_path / "src")
    _backup(repo, root)
    st = (root / "f2").stat()
    (root / "f2").write_bytes(os.urandom(50_000))  # same size
    os.utime(root / "f2", ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime; ctime moves on
    opened.clear()
    result = _backup(repo, root)
    assert opened == ["f2"]
    view = repo.snapshot(result.manifest.id).sources["src"]
    assert view.read_bytes("f2") == (root / "f2").read_bytes()


def test_a_file_changed_just_before_the_backup_is_read_next_time(
    repo: Repository, tmp_path: Path, opened: list[str]
) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "fresh").write_bytes(b"now")  # mtime within the last second: racy, never cached
    _backup(repo, root)
    opened.clear()
    _backup(repo, root)
    assert opened == ["fresh"]


def test_cached_content_missing_from_the_index_is_read_again(
    repo: Repository, tmp_path: Path, opened: list[str]
) -> None:
    root = _old_tree(tmp_path / "src")
    first = _backup(repo, root)
    repo.forget([first.manifest.id])
    repo.prune()  # every blob is gone, but the files cache still names them
    opened.clear()
    result = _backup(repo, root)
    assert sorted(opened) == [f"f{i}" for i in range(5)]
    assert repo.check(read_data=True).ok
    repo.restore(result.manifest.id, tmp_path / "out")


@pytest.fixture
def advised(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every file the files source asks the kernel to read ahead, with how many files had
    been read (``open_scanned``) at that moment."""
    calls: list[tuple[str, int]] = []
    real = builtin_sources._FileOpener.prefetch

    def recording(self: builtin_sources._FileOpener) -> None:
        calls.append((self.name, len(calls_opened)))
        real(self)

    calls_opened: list[str] = []
    real_open = builtin_sources.open_scanned

    def counting(path: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls_opened.append(path)
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtin_sources._FileOpener, "prefetch", recording)
    monkeypatch.setattr(builtin_sources, "open_scanned", counting)
    return calls


def test_files_are_read_ahead_before_they_are_read_unless_the_cache_knows_them(
    repo: Repository, tmp_path: Path, advised: list[tuple[str, int]]
) -> None:
    root = _old_tree(tmp_path / "src")
    _backup(repo, root)
    # every file was advised before any was read: the loop looks 32 entries ahead
    assert advised == [(f"f{i}", 0) for i in range(5)]
    advised.clear()
    (root / "f2").write_bytes(os.urandom(50_000))
    old = time.time_ns() - 10 * 1_000_000_000
    os.utime(root / "f2", ns=(old, old))
    _backup(repo, root)
    assert [name for name, _ in advised] == ["f2"]


def _opener(path: Path) -> builtin_sources._FileOpener:
    st = os.lstat(path)
    return builtin_sources._FileOpener(None, str(path), lambda _: str(path), (path.name,), st, None)


def test_a_read_ahead_file_is_read_through_the_descriptor_opened_early(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"early")
    opener = _opener(path)
    opener.prefetch()
    path.rename(tmp_path / "moved")  # the early descriptor is the scanned file: still read
    with opener() as stream:
        assert stream.read() == b"early"


def test_reading_ahead_a_file_that_vanished_or_became_a_link_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    gone = _opener(path)
    path.unlink()
    gone.prefetch()  # nothing to open: the read reports it
    with pytest.raises(FileNotFoundError):
        gone()
    path.write_bytes(b"x")
    link = _opener(path)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    link.prefetch()
    with pytest.raises(OSError, match="replaced by a symlink"):
        link()


def test_a_read_ahead_file_that_is_never_read_closes_its_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    before = len(os.listdir("/proc/self/fd"))
    openers = [_opener(path) for _ in range(50)]
    for opener in openers:
        opener.prefetch()
    assert len(os.listdir("/proc/self/fd")) >= before + 50
    del openers, opener
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_name_that_is_not_utf8_is_cached_and_not_read_again(
    tmp_path: Path, opened: list[str]
) -> None:
    root = tmp_path / "src"
    root.mkdir()
    name = os.fsdecode(b"bad\xff\xfename.txt")
    (root / name).write_bytes(b"x")
    os.utime(root / name, ns=(1, 1))  # old enough to be cached
    repo = stcore.init_repository(str(tmp_path / "repo"))
    first = repo.backup(stcore.sources_for_paths([str(root)]))
    second = repo.backup(stcore.sources_for_paths([str(root)]))
    assert not first.partial and not second.partial
    assert opened == [name]  # the second backup took it from the files cache


_keys = st.binary(min_size=32, max_size=32)
_rows = st.dictionaries(
    _keys,
    st.tuples(st.text(max_size=8), st.lists(_keys, max_size=3).map(tuple)),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    before=_rows,
    after=_rows,
    keep=st.integers(0, 12),
    marked=st.integers(0, 12),
    packed=st.booleans(),
)
def test_writing_only_the_rows_that_differ_leaves_exactly_the_new_rows(
    tmp_path_factory: pytest.TempPathFactory,
    before: dict[bytes, tuple[str, tuple[bytes, ...]]],
    after: dict[bytes, tuple[str, tuple[bytes, ...]]],
    keep: int,
    marked: int,
    packed: bool,
) -> None:
    """replace(..., previous=) writes only what changed, and leaves the same table as
    rewriting the source whole: rows kept as they were (given again, or only marked with
    ``keep`` as a backup does for unchanged files), changed, new and gone."""
    carried = dict(list(before.items())[:keep])
    after = {**carried, **after}  # some rows carried over as they are
    cache = FilesCache(tmp_path_factory.mktemp("fc") / "files.sqlite")
    try:
        cache.replace("src", [(k, t, c) for k, (t, c) in before.items()])
        cache.replace("other", [(k, t, c) for k, (t, c) in before.items()])
        previous = cache.load("src")
        assert {k: previous.stored(k) for k in before} == {
            k: (t, b"".join(c)) for k, (t, c) in before.items()
        }
        only_marked = {k for k in list(carried)[:marked] if after[k] == before[k]}
        for k in only_marked:
            row = previous._rows.find(k)
            assert previous.token(row) == before[k][0]
            assert previous.content(row) == before[k][1]
            previous.keep(row)
        writes = cache._db.total_changes
        given = [(k, t, c) for k, (t, c) in after.items() if k not in only_marked]
        if packed:  # as a backup gives them
            rows = NewRows()
            for k, t, c in given:
                rows.add(k, t, c)
            assert list(rows) == given
            cache.replace("src", rows, previous=previous)
        else:
            cache.replace("src", given, previous=previous)
        differ = {k for k in after if before.get(k) != after[k]} | (before.keys() - after.keys())
        assert cache._db.total_changes - writes == len(differ)
        loaded = cache.load("src")
        assert {k: loaded.stored(k) for k in after} == {
            k: (t, b"".join(c)) for k, (t, c) in after.items()
        }
        assert len(loaded) == len(after)
        assert len(cache.load("other")) == len(before)  # another source is left alone
    finally:
        cache.close()


def test_damaged_rows_in_the_files_cache_are_ignored(tmp_path: Path) -> None:
    cache = FilesCache(tmp_path / "files.sqlite")
    try:
        good = (b"k" * 32, "1:2:3:4", (b"b" * 32,))
        cache.replace("src", [good])
        source = cache.source_key("src")
        with cache._db:
            for path, token, content in [
                ("text, not a key", "t", b"c" * 32),  # a path stored as TEXT
                (b"short", "t", b"c" * 32),  # a key of the wrong length
                (b"x" * 32, b"\xff", b"c" * 32),  # a token that is not text
                (b"y" * 32, "t", b"c" * 31),  # blob ids cut short
                (b"z" * 32, "t", "not bytes"),
            ]:
                cache._db.execute(
                    "INSERT INTO file_states VALUES (?, ?, ?, ?)", (source, path, token, content)
                )
        loaded = cache.load("src")
        assert len(loaded) == 1
        assert loaded.stored(good[0]) == ("1:2:3:4", b"b" * 32)
        assert loaded.stored(b"x" * 32) is None and loaded.stored(b"y" * 32) is None
    finally:
        cache.close()


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(_keys, st.text(max_size=20), st.lists(_keys, max_size=4).map(tuple)),
        max_size=20,
    )
)
def test_new_rows_give_back_what_was_added(
    rows: list[tuple[bytes, str, tuple[bytes, ...]]],
) -> None:
    recorded = NewRows()
    for row in rows:
        recorded.add(*row)
    assert len(recorded) == len(rows)
    assert list(recorded) == rows


def test_a_small_source_beside_a_large_one_loads_its_own_rows_only(tmp_path: Path) -> None:
    """A source with most of the table is read by a scan, one with little of it through the
    index: both give exactly their own rows."""
    cache = FilesCache(tmp_path / "files.sqlite")
    try:
        big = [(bytes([n]) * 32, f"big-{n}", (b"b" * 32,)) for n in range(40)]
        small = [(bytes([n]) * 32, f"small-{n}", (b"s" * 32, b"t" * 32)) for n in range(3)]
        cache.replace("big", big)
        cache.replace("small", small)
        for name, rows in (("big", big), ("small", small)):
            loaded = cache.load(name)
            assert len(loaded) == len(rows)
            assert {k: loaded.stored(k) for k, _, _ in rows} == {
                k: (t, b"".join(c)) for k, t, c in rows
            }
    finally:
        cache.close()


@settings(max_examples=100, deadline=None)
@given(
    source=st.text(max_size=10),
    path=st.text(max_size=30) | st.binary(max_size=30).map(lambda b: os.fsdecode(b)),
)
def test_a_path_key_is_the_keyed_hash_of_source_and_path(source: str, path: str) -> None:
    """path_key hashes from a state kept per source: the same key as hashing it all at once,
    names that are not UTF-8 included."""
    cache = FilesCache.__new__(FilesCache)
    cache._key = b"k" * 32
    cache._path_prefixes = {}
    for _ in range(2):  # the second from the kept state
        assert cache.path_key(source, path) == cache._mac(
            b"path", source.encode("utf-8", "surrogateescape"),
            path.encode("utf-8", "surrogateescape"),
        )  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([bytes([n]) * 32 for n in range(6)]),
            st.text(max_size=8) | st.just("\udcff lone surrogate"),
            st.lists(_keys, max_size=3).map(b"".join),
        ),
        max_size=30,
    ),
    batch=st.integers(1, 7),
)
def test_rows_load_in_batches_as_one_by_one_the_first_of_a_path_winning(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[bytes, str, bytes]],
    batch: int,
) -> None:
    cache = FilesCache(tmp_path_factory.mktemp("fc") / "files.sqlite")
    try:
        with mock.patch("stcore.repo.filescache._BATCH", batch):
            loaded = RecordedFiles(cache, "src", rows, count=len(rows))
        first: dict[bytes, tuple[str, bytes]] = {}
        for key, token, joined in rows:
            first.setdefault(key, (token, joined))
        assert len(loaded) == len(first)
        for key, (token, joined) in first.items():
            assert loaded.stored(key) == (token, joined)
    finally:
        cache.close()


def test_unchanged_gives_the_row_and_ids_only_for_the_recorded_token(tmp_path: Path) -> None:
    cache = FilesCache(tmp_path / "files.sqlite")
    try:
        odd = os.fsdecode(b"dir/\xff\xfe")  # a path that is not UTF-8
        one, two = (b"a" * 32,), (b"b" * 32, b"c" * 32)
        cache.replace(
            "src",
            [
                (cache.path_key("src", "x/y"), "1:2:3:4", one),
                (cache.path_key("src", odd), "5:6:7:8", two),
                (cache.path_key("src", "empty"), "0:1:1:1", ()),
            ],
        )
        loaded = cache.load("src")
        x_row = loaded.find("x/y")
        assert loaded.unchanged("x/y", "1:2:3:4") == (x_row, one)
        assert loaded.unchanged(odd, "5:6:7:8") == (loaded.find(odd), two)
        assert loaded.unchanged("empty", "0:1:1:1") == (loaded.find("empty"), ())
        assert loaded.unchanged("x/y", "1:2:3:5") is None  # another token: read again
        assert loaded.unchanged("x/z", "1:2:3:4") is None  # never recorded
        assert cache.load("other").unchanged("x/y", "1:2:3:4") is None  # another source
    finally:
        cache.close()
