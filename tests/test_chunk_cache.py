"""The chunk cache: decoded chunks on local disk, read back a checked slice at a time.

* a second read of a file decodes nothing and reads no pack, and answers the same bytes for
  every range around chunk and piece boundaries (and random ones, by hypothesis);
* one flipped bit anywhere in an entry (header, digests, data), or a truncated entry, is
  detected every time: the entry is dropped and the read still answers the right bytes;
* nothing is kept for an encrypted repository, with ``cache=False``, or for a file bigger
  than a quarter of the cache bound; ``cache stats`` shows the entries and ``cache clear``
  removes them.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from st_local.backend import LocalBackend

import stcore
from stcore.repo.chunkcache import HEADER, KIND, PIECE
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.helpers import init_encrypted, open_encrypted

SIZE = 3 * 1024 * 1024 + 12_345


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A repository holding one 3 MiB file of mixed content (chunks of 0.5 to 2 MiB)."""
    root = tmp_path_factory.mktemp("chunkcache")
    rng = random.Random(5)
    content = b"".join(
        rng.randbytes(4096) if n % 3 else bytes([n % 251]) * 4096 for n in range(SIZE // 4096)
    ) + rng.randbytes(SIZE % 4096)
    (root / "data").mkdir()
    (root / "data" / "blob.bin").write_bytes(content)
    repository = stcore.init_repository(str(root / "repo"))
    with repository:
        repository.backup([stcore.make_source("files", "files", {"path": str(root / "data")})])
    return root / "repo", content


@pytest.fixture
def pack_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    read = LocalBackend.read

    def counted(self: LocalBackend, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if key.startswith("data/"):
            reads.append(key)
        return read(self, key, offset, length)

    monkeypatch.setattr(LocalBackend, "read", counted)
    return reads


def open_repo(location: Path, **options: object) -> Repository:
    return stcore.open_repository(str(location), **options)  # type: ignore[arg-type]


def read_range(repo: Repository, start: int, end: int, view: object = None) -> bytes:
    """Bytes ``[start, end)`` of the file, through a new handle (nothing kept in memory)."""
    source = view or repo.snapshot("latest").sources["files"]
    with source.open("blob.bin") as handle:  # type: ignore[attr-defined]
        handle.seek(start)
        return handle.read(end - start)


def entries(repo: Repository) -> list[Path]:
    root = repo.store.local_cache.root / KIND
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def warm(backed_up: tuple[Path, bytes]) -> Iterator[tuple[Repository, bytes]]:
    location, content = backed_up
    repo = open_repo(location)
    repo.store.local_cache.clear()
    assert read_range(repo, 0, SIZE) == content
    repo.store.local_cache.drain()
    assert len(entries(repo)) >= 2
    yield repo, content
    repo.store.local_cache.clear()
    repo.close()


def test_a_second_read_reads_no_pack_and_answers_every_range(
    warm: tuple[Repository, bytes], pack_reads: list[str]
) -> None:
    repo, content = warm
    view = repo.snapshot("latest").sources["files"]
    node = view.open("blob.bin")
    pack_reads.clear()  # the trees
    edges = {0, SIZE}
    for start in node._starts:
        for k in range(0, 2 * 1024 * 1024 // PIECE + 2):
            edges.update(e for e in (start + k * PIECE - 1, start + k * PIECE) if 0 <= e <= SIZE)
    points = sorted(edges)
    sample = [*points[:: max(1, len(points) // 40)], SIZE]
    for a in sample:
        for b in sample:
            if a <= b:
                assert read_range(repo, a, b, view) == content[a:b], (a, b)
    assert pack_reads == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=st.integers(0, SIZE), length=st.integers(0, 3 * PIECE))
def test_random_ranges_from_the_cache_are_the_files_bytes(
    warm: tuple[Repository, bytes], start: int, length: int
) -> None:
    repo, content = warm
    assert read_range(repo, start, min(SIZE, start + length)) == content[start : start + length]


def test_every_flipped_bit_of_an_entry_is_detected_and_the_read_stays_right(
    warm: tuple[Repository, bytes], pack_reads: list[str]
) -> None:
    repo, content = warm
    chunk_cache = repo.store.chunk_cache
    assert chunk_cache is not None
    node = repo.snapshot("latest").sources["files"].open("blob.bin")
    first_id, first_size = node._ids[0], node._lengths[0]
    path = repo.store.local_cache._path(KIND, first_id.hex())
    pristine = path.read_bytes()
    digests_end = HEADER.size + 16 * -(-first_size // PIECE)
    # every bit of the header and the digests, and one bit in every 509th byte of the data
    positions = [(n, bit) for n in range(digests_end) for bit in range(8)]
    positions += [(n, n % 8) for n in range(digests_end, len(pristine), 509)]
    for n, bit in positions:
        damaged = bytearray(pristine)
        damaged[n] ^= 1 << bit
        path.write_bytes(bytes(damaged))
        before = chunk_cache.damaged
        assert chunk_cache.read(first_id, 0, first_size) is None, (n, bit)
        assert chunk_cache.damaged == before + 1 and not path.exists()
        path.write_bytes(pristine)
    path.write_bytes(pristine[: len(pristine) - 1])  # truncated
    assert chunk_cache.read(first_id, 0, first_size) is None
    # through a file, damage costs a decode from the repository, never a wrong byte
    path.write_bytes(pristine[:-100] + bytes(100))
    pack_reads.clear()
    assert read_range(repo, 0, SIZE) == content
    assert pack_reads  # the damaged chunk was fetched again


def test_nothing_is_kept_when_encrypted_refused_or_too_big(
    backed_up: tuple[Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location, content = backed_up
    refused = open_repo(location, cache=False)
    assert refused.store.chunk_cache is None
    assert read_range(refused, 0, SIZE) == content
    refused.close()

    monkeypatch.setenv("STCORE_CACHE_MAX_BYTES", str(4 * SIZE - 1))  # a quarter is too small
    small = open_repo(location)
    small.store.local_cache.clear()
    assert read_range(small, 0, SIZE) == content
    small.store.local_cache.drain()
    assert entries(small) == []
    small.close()
    monkeypatch.delenv("STCORE_CACHE_MAX_BYTES")

    secret = init_encrypted(tmp_path / "secret")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(content)
    with secret:
        secret.backup([stcore.make_source("files", "files", {"path": str(tmp_path / "d")})])
    encrypted = open_encrypted(tmp_path / "secret")
    assert encrypted.store.chunk_cache is None
    with encrypted.snapshot("latest").sources["files"].open("f") as handle:
        assert handle.read() == content
    assert entries(encrypted) == []
    encrypted.close()


def test_cache_stats_show_the_entries_and_clear_removes_them(
    warm: tuple[Repository, bytes],
) -> None:
    repo, _ = warm
    location = repo.location
    stats = json.loads(run_cli("--repo", location, "cache", "stats", "--json").stdout)
    assert stats["kinds"][KIND]["entries"] == len(entries(repo)) > 0
    run_cli("--repo", location, "cache", "clear")
    assert entries(repo) == []
    assert os.path.isdir(location)


def test_readers_on_many_threads_stay_right_while_the_cache_is_cleared_under_them(
    warm: tuple[Repository, bytes],
) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    repo, content = warm
    view = repo.snapshot("latest").sources["files"]
    stop = threading.Event()

    def clearing() -> None:
        while not stop.is_set():
            repo.store.local_cache.clear()  # unlinks entries other threads have mapped

    def reading(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            start = rng.randrange(SIZE)
            end = min(SIZE, start + rng.randrange(1, 3 * PIECE))
            assert read_range(repo, start, end, view) == content[start:end]

    cleaner = threading.Thread(target=clearing)
    cleaner.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(reading, range(12)))
    finally:
        stop.set()
        cleaner.join()


def test_the_cache_bound_holds_across_many_short_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each session reads less than a counter update's worth (1/64 of the bound): what they
    wrote is still counted when they close, so eviction keeps the cache near its bound."""
    bound = 8 * 1024 * 1024
    monkeypatch.setenv("STCORE_CACHE_MAX_BYTES", str(bound))
    rng = random.Random(1)
    (tmp_path / "data").mkdir()
    for n in range(150):  # 15 MB in all, twice the bound
        (tmp_path / "data" / f"f{n}").write_bytes(rng.randbytes(100_000))  # < bound / 64
    repo = stcore.init_repository(str(tmp_path / "repo"))
    with repo:
        repo.backup([stcore.make_source("files", "files", {"path": str(tmp_path / "data")})])
    root = None
    for n in range(150):
        with stcore.open_repository(str(tmp_path / "repo")) as session:
            with session.snapshot("latest").sources["files"].open(f"f{n}") as handle:
                assert handle.read() == (tmp_path / "data" / f"f{n}").read_bytes()
            root = session.store.local_cache.root
    assert root is not None
    on_disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name[0] != ".")
    assert 0 < on_disk <= bound + bound // 64
