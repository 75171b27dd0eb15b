"""Dedup across files, sources and snapshots; compression of JSON-heavy data."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import stcore
from stcore.repository import Repository


def _stored(repo: Repository) -> int:
    return sum(info.size for info in repo.backend.list())


def test_second_backup_of_unchanged_data_adds_under_one_percent(
    repo: Repository, sample_tree: Path
) -> None:
    repo.backup(stcore.sources_for_paths([str(sample_tree)]))
    after_first = _stored(repo)
    repo.backup(stcore.sources_for_paths([str(sample_tree)]))
    growth = _stored(repo) - after_first
    assert growth < after_first * 0.01
    assert len(list(repo.backend.list("snapshots/"))) == 2


def test_duplicate_files_are_stored_once(repo: Repository, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    payload = os.urandom(3 * 1024 * 1024)
    for i in range(5):
        (source / f"copy-{i}.bin").write_bytes(payload)
    repo.backup(stcore.sources_for_paths([str(source)]))
    data_bytes = sum(info.size for info in repo.backend.list("data/"))
    assert len(payload) <= data_bytes < len(payload) * 1.05


def test_identical_data_in_two_sources_dedupes(repo: Repository, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    (one / "blob").write_bytes(os.urandom(2 * 1024 * 1024))
    shutil.copytree(one, two)
    repo.backup(stcore.sources_for_paths([str(one), str(two)]))
    data_bytes = sum(info.size for info in repo.backend.list("data/"))
    assert data_bytes < 2 * 1024 * 1024 * 1.05


def test_an_edit_in_the_middle_of_a_large_file_stores_little(
    repo: Repository, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    rng = random.Random(3)
    body = bytearray(rng.randbytes(32 * 1024 * 1024))
    (source / "model.bin").write_bytes(body)
    repo.backup(stcore.sources_for_paths([str(source)]))
    before = _stored(repo)
    body[16 * 1024 * 1024 : 16 * 1024 * 1024 + 100] = b"x" * 100
    (source / "model.bin").write_bytes(body)
    repo.backup(stcore.sources_for_paths([str(source)]))
    # Only the chunks around the edit are new: well under a tenth of the file.
    assert _stored(repo) - before < len(body) // 10


def make_json_heavy_sample(root: Path) -> int:
    """Documents and logs shaped like an AI app's state: repetitive keys, numbers, text."""
    rng = random.Random(11)
    root.mkdir(parents=True)
    words = ["signal", "trust", "model", "agent", "score", "latency", "token", "market", "risk"]
    total = 0
    for i in range(40):
        document = {
            "id": i,
            "agents": [
                {
                    "name": f"agent-{j}",
                    "state": rng.choice(words),
                    "scores": [round(rng.random(), 4) for _ in range(20)],
                    "notes": " ".join(rng.choice(words) for _ in range(30)),
                }
                for j in range(50)
            ],
        }
        text = json.dumps(document, indent=2)
        (root / f"state-{i}.json").write_text(text)
        total += len(text)
    with open(root / "events.jsonl", "w") as log:
        for k in range(20000):
            line = json.dumps({"seq": k, "event": rng.choice(words), "value": rng.randint(0, 999)})
            log.write(line + "\n")
            total += len(line) + 1
    return total


def test_json_heavy_sample_shrinks_by_at_least_seventy_percent(
    repo: Repository, tmp_path: Path
) -> None:
    raw = make_json_heavy_sample(tmp_path / "json")
    repo.backup(stcore.sources_for_paths([str(tmp_path / "json")]))
    stored = _stored(repo)
    assert stored <= raw * 0.30, f"stored {stored} of {raw} bytes"


def test_incompressible_blobs_are_stored_uncompressed(repo: Repository, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "random").write_bytes(os.urandom(1024 * 1024))
    repo.backup(stcore.sources_for_paths([str(source)]))
    entries = [e for e in repo.index.values() if e.blob_type == "data"]
    # A frame is one code byte plus the raw bytes when compression would not shrink them.
    assert all(e.stored_length == e.raw_length + 1 for e in entries)


def test_every_compressor_round_trips_a_backup(tmp_path: Path) -> None:
    source = tmp_path / "src"
    make_json_heavy_sample(source)
    for name in ("zstd", "gzip", "lzma", "none"):
        repo = stcore.init_repository(str(tmp_path / f"repo-{name}"), compression=name)
        repo.backup(stcore.sources_for_paths([str(source)]))
        repo.restore("latest", tmp_path / f"out-{name}")
        for path in source.iterdir():
            assert (tmp_path / f"out-{name}" / "src" / path.name).read_bytes() == path.read_bytes()
        assert repo.check(read_data=True).ok


def test_a_file_larger_than_a_pack_spans_several_packs(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"), pack_size=4 * 1024 * 1024)
    source = tmp_path / "src"
    source.mkdir()
    (source / "big").write_bytes(os.urandom(12 * 1024 * 1024))
    repo.backup(stcore.sources_for_paths([str(source)]))
    packs = list(repo.backend.list("data/"))
    assert len(packs) >= 3
    repo.restore("latest", tmp_path / "out")
    assert (tmp_path / "out" / "src" / "big").read_bytes() == (source / "big").read_bytes()
