"""A local ``check --read-data`` reads each pack in windows (``PACK_WINDOW``) on two reader
threads; it must find exactly what reading each pack whole finds, whatever the damage: bytes
flipped anywhere, a pack cut short or grown, a range zeroed, blobs out of order."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stcore
from stcore.interfaces import ObjectInfo
from stcore.repo import check as check_module
from stcore.repo.format import hash_id

#: window sizes to compare with reading whole: one byte, smaller and larger than a blob
WINDOWS = [1, 7, 333, 5000]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository of a few packs of a few kilobytes, each holding several blobs."""
    root = tmp_path_factory.mktemp("windows")
    source = root / "src"
    source.mkdir()
    rng = random.Random(3)
    for number in range(12):
        size = rng.choice([10, 900, 2500, 7000])
        (source / f"f{number:02}").write_bytes(rng.randbytes(size // 2) * 2)
    with stcore.init_repository(root / "repo", pack_size=4096) as repo:
        repo.backup(stcore.sources_for_paths([str(source)]))
    return root / "repo"


def _packs(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "data").rglob("*") if p.is_file())


def _check(repo: Path, window: int, monkeypatch: pytest.MonkeyPatch) -> tuple[object, ...]:
    monkeypatch.setattr(check_module, "PACK_WINDOW", window)
    with stcore.open_repository(repo, cache=False) as opened:
        result = opened.check(read_data=True)
    return result.errors, result.warnings, result.ok


damage = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6)),
    st.tuples(st.just("grow"), st.binary(min_size=1, max_size=3000)),
    st.tuples(st.just("zero"), st.integers(0, 10**6), st.integers(1, 4000)),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(which=st.integers(0, 100), harm=st.lists(damage, min_size=1, max_size=2))
def test_windows_find_what_whole_reads_find(
    pristine: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    which: int,
    harm: list[tuple],  # type: ignore[type-arg]
) -> None:
    repo = tmp_path_factory.mktemp("damaged") / "repo"
    shutil.copytree(pristine, repo)
    packs = _packs(repo)
    pack = packs[which % len(packs)]
    data = bytearray(pack.read_bytes())
    for kind, *args in harm:
        if kind == "flip" and data:
            data[args[0] % len(data)] ^= args[1]
        elif kind == "cut":
            del data[args[0] % (len(data) + 1) :]
        elif kind == "grow":
            data += args[0]
        elif kind == "zero" and data:
            start = args[0] % len(data)
            data[start : start + args[1]] = bytes(len(data[start : start + args[1]]))
    pack.write_bytes(bytes(data))
    whole = _check(repo, 10**9, monkeypatch)
    for window in WINDOWS:
        assert _check(repo, window, monkeypatch) == whole, window
    shutil.rmtree(repo)


def test_a_sound_repository_checks_clean_in_any_window(
    pristine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(_packs(pristine)) >= 3
    assert max(p.stat().st_size for p in _packs(pristine)) > max(WINDOWS[:-1])
    for window in [*WINDOWS, 10**9]:
        assert _check(pristine, window, monkeypatch) == ((), (), True)


class _Bytes:
    """A backend of one object, for :class:`check._PackBytes` alone."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stat(self, key: str) -> ObjectInfo:
        return ObjectInfo(key=key, size=len(self.data))

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.data[offset : None if length is None else offset + length]


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=300),
    asked=st.lists(st.tuples(st.integers(0, 320), st.integers(0, 120)), max_size=12),
    window=st.integers(1, 64),
    shrink_to=st.none() | st.integers(0, 300),
)
def test_a_pack_read_in_windows_gives_the_bytes_and_hash_of_a_whole_read(
    data: bytes,
    asked: list[tuple[int, int]],
    window: int,
    shrink_to: int | None,
) -> None:
    """In order or not, overlapping or with gaps, past the end, and with the object cut short
    after its size was taken: each range is what slicing the whole gives, and the hash is the
    whole's (or, cut short, not the original's)."""
    backend = _Bytes(data)
    windowed = check_module._PackBytes(backend, "k", window)  # type: ignore[arg-type]
    if shrink_to is not None:
        backend.data = data[:shrink_to]
    # a pack no larger than a window was read whole when opened: cutting it later changes nothing
    now = data if len(data) <= window else backend.data
    biggest = 0
    for offset, length in asked:
        biggest = max(biggest, length)
        assert (
            windowed.range(offset, length)
            == now[offset : offset + length][: max(0, len(data) - offset)]
        )
        assert len(windowed._held) <= window + biggest  # a window and a blob, never more
    assert (windowed.digest() == hash_id(data)) == (now == data)
