"""Several processes writing one local repository at once: both succeed, both restore."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import stcore
from tests.trees import snapshot_of_tree


def test_two_processes_backing_up_at_once_both_succeed(tmp_path: Path) -> None:
    repo_path = tmp_path / "repo"
    stcore.init_repository(str(repo_path)).close()
    sources = []
    for name in ("left", "right"):
        root = tmp_path / name
        root.mkdir()
        shared = b"shared between both writers" * 50_000
        (root / "shared.bin").write_bytes(shared)  # both processes store the same blobs
        for i in range(20):
            (root / f"own-{i}.bin").write_bytes(os.urandom(100_000))
        sources.append(root)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "stcore.cli", "--repo", str(repo_path), "backup", str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root in sources
        for _ in range(2)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    repo = stcore.open_repository(str(repo_path))
    manifests = repo.snapshots()
    assert len(manifests) == 4
    for manifest in manifests:
        (name,) = manifest.sources
        target = tmp_path / f"restore-{manifest.short_id}"
        repo.restore(manifest.id, target)
        assert snapshot_of_tree(target / name) == snapshot_of_tree(tmp_path / name)
    assert repo.check(read_data=True).ok
