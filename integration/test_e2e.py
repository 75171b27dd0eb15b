"""A repository living directly on each cloud backend: init, backup, snapshots, restore, check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import stcore
from integration.conftest import Remote
from tests.trees import make_sample_tree, snapshot_of_tree


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stcore.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_cli_round_trip_on_each_cloud(remote: Remote, tmp_path: Path) -> None:
    url, _ = remote
    tree = make_sample_tree(tmp_path / "sample", big_size=6 * 1024 * 1024)
    missing = cli("--repo", url, "snapshots")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    init = cli("init", "--repo", url, "--create-bucket")
    assert init.returncode == 0, init.stderr
    backup = cli("backup", "--repo", url, "--json", "--tag", "cloud", str(tree))
    assert backup.returncode == 0, backup.stderr
    snapshot_id = json.loads(backup.stdout)["id"]
    again = cli("backup", "--repo", url, "--json", str(tree))
    assert json.loads(again.stdout)["added_bytes"] < 10_000  # dedup works remotely too
    listing = json.loads(cli("snapshots", "--repo", url, "--json", "--tag", "cloud").stdout)
    assert [s["id"] for s in listing] == [snapshot_id]
    restore = cli("restore", "--repo", url, snapshot_id, "--target", str(tmp_path / "out"))
    assert restore.returncode == 0, restore.stderr
    assert snapshot_of_tree(tmp_path / "out" / "sample") == snapshot_of_tree(tree)
    # Disaster recovery: a machine with nothing but the URL and credentials (no cache, no config).
    fresh = {"STCORE_CACHE_DIR": str(tmp_path / "fresh-cache"), "HOME": str(tmp_path / "fresh")}
    recovered = cli("restore", "--repo", url, "latest", "--target", str(tmp_path / "dr"), env=fresh)
    assert recovered.returncode == 0, recovered.stderr
    assert snapshot_of_tree(tmp_path / "dr" / "sample") == snapshot_of_tree(tree)
    check = cli("check", "--repo", url, "--read-data", "--json")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["ok"] is True


def test_library_view_reads_from_the_cloud(remote: Remote, tmp_path: Path) -> None:
    url, _ = remote
    (tmp_path / "state.json").write_text(json.dumps({"agents": 3}))
    repo = stcore.init_repository(url, create=True)
    repo.backup([stcore.make_source("ai_hub", "json", {"path": str(tmp_path / "state.json")})])
    reopened = stcore.open_repository(url)
    assert reopened.snapshot("latest").sources["ai_hub"].data == {"agents": 3}
    reopened.close()
    repo.close()
