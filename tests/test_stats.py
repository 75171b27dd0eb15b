"""Stats: what is stored against what the snapshots hold, as a typed value."""

from __future__ import annotations

from pathlib import Path

import stcore
from stcore.repository import Repository


def test_stats_count_what_the_repository_stores(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("same words " * 5000)
    (tmp_path / "src" / "b.txt").write_text("same words " * 5000)
    repo.backup(stcore.sources_for_paths([str(tmp_path / "src")]))
    numbers = repo.stats()
    assert isinstance(numbers, stcore.RepositoryStats)
    assert numbers.snapshots == 1 and numbers.snapshot_bytes_total == 110_000
    assert numbers.unique_data_bytes == 55_000  # the two files are one blob
    assert numbers.dedup_ratio == 2.0
    stored = numbers.stored_by_kind
    assert numbers.stored_bytes == sum(stored.values()) and stored["data"] > 0
    assert numbers.to_json()["stored_by_kind"] == dict(stored)
    assert "1 snapshots" in repr(numbers)
