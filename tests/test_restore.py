"""Restore reads each byte of a pack once and writes blobs where they go, safely."""

from __future__ import annotations

import json
import os
import random
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stcore
from stcore.errors import CorruptObjectError, RestoreError
from stcore.models import TreeNode
from stcore.repo import restore as restore_module
from stcore.repo.format import object_key
from stcore.repo.reader import LOCAL_RANGE_BYTES
from stcore.repository import Repository
from tests.test_bad_input import _forge
from tests.test_reader import (
    SMALL_CHUNKS,
    SMALL_PACKS,
    _damage_middle_of_a_pack,
    count_reads,
    data_entries,
    data_reads,
    small_blob_repository,
)
from tests.trees import snapshot_of_tree


def _tree_ranges(repo: Repository) -> set[tuple[str, int, int]]:
    """The exact reads of tree blobs (restore reads trees one by one while it plans)."""
    return {
        (object_key("data", e.pack_id), e.offset, e.stored_length)
        for e in repo.index.values()
        if e.blob_type == "tree"
    }


def _data_phase_reads(repo: Repository, reads: list[tuple[str, int, int | None]]) -> list[str]:
    trees = _tree_ranges(repo)
    return [key for key, offset, length in data_reads(reads) if (key, offset, length) not in trees]


def test_a_restore_of_many_small_blobs_reads_each_pack_at_most_once(tmp_path: Path) -> None:
    source = tmp_path / "src"
    small_blob_repository(tmp_path / "repo", source, files=120).close()
    repo = stcore.open_repository(str(tmp_path / "repo"))
    blobs, packs = len(data_entries(repo)), len(list(repo.backend.list("data/")))
    assert blobs > 1000 and packs > 5
    reads = count_reads(repo)
    result = repo.restore("latest", tmp_path / "out")
    keys = _data_phase_reads(repo, reads)
    assert len(keys) == len(set(keys)) <= packs  # was one read per blob
    assert len(data_reads(reads)) <= packs + len(_tree_ranges(repo))
    assert result.files == 120
    assert snapshot_of_tree(tmp_path / "out" / "src") == snapshot_of_tree(source)
    repo.close()


def test_duplicates_in_a_file_and_across_files_empty_files_modes_and_mtimes(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    block = rng.randbytes(4096)
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "repeated.bin").write_bytes(block * 16)  # the same chunks many times in one file
    (source / "copy.bin").write_bytes(block * 16)  # ...and in another file
    (source / "sub" / "prefix.bin").write_bytes(block * 3 + rng.randbytes(5000))
    (source / "empty").write_bytes(b"")
    (source / "sub" / "also-empty").write_bytes(b"")
    (source / "read-only.txt").write_bytes(block[:100])
    (source / "read-only.txt").chmod(0o444)
    (source / "run.sh").write_bytes(b"#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    for i, path in enumerate(sorted(source.rglob("*"))):
        os.utime(path, ns=(1_500_000_000_000_000_000 + i * 1_000_000_007,) * 2)
    repo = stcore.init_repository(
        str(tmp_path / "repo"), chunker=SMALL_CHUNKS, pack_size=SMALL_PACKS
    )
    repo.backup(stcore.sources_for_paths([str(source)]))
    node = repo.snapshot("latest").sources["src"]._file("repeated.bin")
    assert len(set(node.content)) < len(node.content)  # the test needs real duplicates
    reads = count_reads(repo)
    events: list[tuple[str, int]] = []
    result = repo.restore("latest", tmp_path / "out", progress=lambda e, n: events.append((e, n)))
    assert snapshot_of_tree(tmp_path / "out" / "src") == snapshot_of_tree(source)
    keys = _data_phase_reads(repo, reads)
    assert len(keys) == len(set(keys))  # every pack once, however often its blobs repeat
    assert result.files == 7 and result.bytes == sum(
        p.stat().st_size for p in source.rglob("*") if p.is_file()
    )
    assert sum(n for e, n in events if e == "bytes") == result.bytes
    assert sum(n for e, n in events if e == "file") == 7
    repo.close()


def test_restoring_again_over_an_earlier_restore_truncates_and_rewrites(
    repo: Repository, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a").write_bytes(b"short")
    repo.backup(stcore.sources_for_paths([str(source)]))
    out = tmp_path / "out" / "src"
    out.mkdir(parents=True)
    (out / "a").write_bytes(b"a much longer file that was there before")
    repo.restore("latest", tmp_path / "out")
    assert (out / "a").read_bytes() == b"short"


def test_the_sample_tree_round_trips_reading_each_byte_once_in_bounded_reads(
    sample_tree: Path, tmp_path: Path
) -> None:
    """A local restore reads a pack in ranges of at most LOCAL_RANGE_BYTES (one blob longer
    than that gets a read of its own): each range is held in memory whole. No byte is read
    twice."""
    repo = stcore.init_repository(str(tmp_path / "repo"), pack_size=4 * 1024 * 1024)
    repo.backup(stcore.sources_for_paths([str(sample_tree)]))
    trees = _tree_ranges(repo)
    reads = count_reads(repo)
    repo.restore("latest", tmp_path / "out")
    by_pack: dict[str, list[tuple[int, int]]] = {}
    for key, offset, length in data_reads(reads):
        if (key, offset, length) not in trees:
            assert length is not None
            by_pack.setdefault(key, []).append((offset, offset + length))
    longest_blob = max(e.stored_length for e in data_entries(repo))
    for spans in by_pack.values():
        spans.sort()
        assert all(end <= start for (_, end), (start, _) in pairwise(spans))
        assert all(end - start <= max(LOCAL_RANGE_BYTES, longest_blob) for start, end in spans)
    assert len(by_pack) > 1
    assert snapshot_of_tree(tmp_path / "out" / "sample") == snapshot_of_tree(sample_tree)
    repo.close()


def test_open_files_stay_bounded_with_many_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("counting descriptors needs /proc")
    source = tmp_path / "src"
    small_blob_repository(tmp_path / "repo", source, files=400, seed=5).close()
    repo = stcore.open_repository(str(tmp_path / "repo"), workers=4)
    monkeypatch.setattr(restore_module, "MAX_OPEN_FILES", 8)
    baseline = len(os.listdir("/proc/self/fd"))
    peak = [0]
    original = restore_module._WriteRun.flush

    def flush(run: restore_module._WriteRun) -> int:
        peak[0] = max(peak[0], len(os.listdir("/proc/self/fd")))
        return original(run)

    monkeypatch.setattr(restore_module._WriteRun, "flush", flush)
    repo.restore("latest", tmp_path / "out")
    assert peak[0] > baseline  # the probe ran while files were open
    # 8 restore descriptors, at most one pack file per reading thread, a little slack
    assert peak[0] - baseline <= 8 + 4 + 4, (baseline, peak[0])
    assert snapshot_of_tree(tmp_path / "out" / "src") == snapshot_of_tree(source)
    repo.close()


# --- damage and hostile snapshots ----------------------------------------------------------------


def test_a_corrupted_blob_in_a_coalesced_range_names_pack_and_blob(tmp_path: Path) -> None:
    small_blob_repository(tmp_path / "repo", tmp_path / "src").close()
    repo = stcore.open_repository(str(tmp_path / "repo"))
    key, victim = _damage_middle_of_a_pack(repo)
    target = tmp_path / "area" / "out"
    with pytest.raises(CorruptObjectError) as caught:
        repo.restore("latest", target)
    assert f"pack {key}, blob {victim.blob_id.hex()}" in str(caught.value)
    assert [p.name for p in (tmp_path / "area").iterdir()] == ["out"]  # nothing outside
    repo.close()


def test_a_truncated_pack_fails_the_restore_clearly(tmp_path: Path) -> None:
    small_blob_repository(tmp_path / "repo", tmp_path / "src").close()
    repo = stcore.open_repository(str(tmp_path / "repo"))
    key = object_key("data", data_entries(repo)[0].pack_id)
    path = Path(repo.location) / key
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CorruptObjectError, match=rf"{key} is truncated: expected \d+ bytes"):
        repo.restore("latest", tmp_path / "out")
    repo.close()


def test_a_size_that_does_not_match_the_chunks_is_refused_before_writing(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    node = TreeNode(name="f", kind="file", mode=0o644, mtime_ns=0, size=999)  # content is 6
    snapshot_id = _forge(repo, tmp_path, [node])
    with pytest.raises(RestoreError, match=r"f: its chunks hold 6 bytes but the snapshot says 999"):
        repo.restore(snapshot_id, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_a_file_replaced_by_a_symlink_mid_restore_is_not_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One file whose blobs span many packs: it is created by the first range that reaches it
    # and opened again by later ones, the moment an attacker could swap in a link.
    source = tmp_path / "src"
    source.mkdir()
    (source / "a").write_bytes(random.Random(4).randbytes(256 * 1024))
    repo = stcore.init_repository(
        str(tmp_path / "repo"), chunker=SMALL_CHUNKS, pack_size=SMALL_PACKS
    )
    repo.backup(stcore.sources_for_paths([str(source)]))
    assert len(list(repo.backend.list("data/"))) > 2
    outside = tmp_path / "outside"
    outside.write_bytes(b"untouched")
    original = restore_module.Restorer._open_for_write

    def open_then_swap(self: restore_module.Restorer, number: int) -> int:
        fd = original(self, number)
        path = self.file_path(number)
        if not path.is_symlink():
            path.unlink()
            os.symlink(outside, path)  # an attacker swaps the file for a link after creation
        return fd

    monkeypatch.setattr(restore_module.Restorer, "_open_for_write", open_then_swap)
    with pytest.raises(OSError):
        repo.restore("latest", tmp_path / "out")
    assert outside.read_bytes() == b"untouched"
    repo.close()


@given(
    st.lists(
        st.tuples(
            st.binary(min_size=1, max_size=2), st.integers(0, 2**32 - 1), st.integers(0, 2**63 - 1)
        ),
        unique_by=lambda p: (p[1], p[2]),  # one blob at a place in a file
    )
)
def test_placements_give_back_every_place_each_blob_goes(
    places: list[tuple[bytes, int, int]],
) -> None:
    placements = restore_module._Placements()
    for blob_id, number, offset in places:
        placements.add(blob_id, number, offset)
    for blob_id in {b for b, _, _ in places}:
        want = sorted((n, o) for b, n, o in places if b == blob_id)
        assert sorted(placements.of(blob_id)) == want


def test_parsed_tree_entries_share_their_type_and_mode_objects() -> None:
    """A restore holds every entry of a snapshot: the JSON decoder's fresh string per type and
    int per mode would cost each of them two objects."""
    a, b = (
        TreeNode.from_json(json.loads(f'{{"name": "{n}", "type": "file", "mode": 33188, '
                                      '"mtime_ns": 1, "size": 0, "content": []}'))
        for n in "ab"
    )  # fmt: skip
    assert a.kind is b.kind == "file" and a.mode is b.mode == 33188
