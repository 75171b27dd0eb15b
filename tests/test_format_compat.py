"""A repository written by the format 1 stcore (tests/data/format1-repo, made by the release
before format 2 with `stcore init` and `stcore backup` of two small files) stays readable and
writable: format 2 readers accept its unchecked objects, and new objects written into it keep
format 1, so an older stcore can still read it."""

from __future__ import annotations

import shutil
from pathlib import Path

import stcore
from stcore.repo.format import is_checked

FIXTURE = Path(__file__).resolve().parent / "data" / "format1-repo"


def test_a_format_1_repository_reads_restores_and_takes_new_backups(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURE, root)
    repo = stcore.open_repository(str(root))
    assert repo.config.version == 1
    (old,) = repo.snapshots()
    assert old.tags == ("v1",)
    repo.restore(old.id, tmp_path / "out")
    restored = tmp_path / "out" / "v1src"
    assert (restored / "a.txt").read_text() == "hello v1\n"
    assert (restored / "sub" / "b.txt").read_text() == "nested\n"
    assert repo.check(read_data=True).ok

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "c.txt").write_text("written by format 2 code")
    new = repo.backup(stcore.sources_for_paths([str(tmp_path / "src")])).manifest
    stored = repo.backend.read(f"snapshots/{new.id}")
    assert not is_checked(stored)  # still format 1, for older readers
    assert stcore.open_repository(str(root)).config.version == 1
    assert repo.check(read_data=True).ok
