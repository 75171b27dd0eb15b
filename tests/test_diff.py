"""Backup then restore gives back every byte, name, mode, mtime, symlink and empty directory."""

from __future__ import annotations

from pathlib import Path

import stcore
from stcore.repository import Repository


def test_diff_lists_added_removed_and_modified(repo: Repository, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "same").write_text("same")
    (source / "changed").write_text("before")
    (source / "gone").write_text("bye")
    first = repo.backup(stcore.sources_for_paths([str(source)])).manifest
    (source / "changed").write_text("after!")
    (source / "gone").unlink()
    (source / "new").write_text("hi")
    second = repo.backup(stcore.sources_for_paths([str(source)])).manifest
    from stcore.repo.diff import diff_snapshots

    changes = {(c.change, c.path) for c in diff_snapshots(repo, first, second)}
    assert ("modified", "changed") in changes
    assert ("removed", "gone") in changes
    assert ("added", "new") in changes
    assert not any(path == "same" for _, path in changes)
