"""Backup then restore gives back every byte, name, mode, mtime, symlink and empty directory."""

from __future__ import annotations

import json
from pathlib import Path

import stcore
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.trees import snapshot_of_tree


def test_library_round_trip_is_byte_for_byte(
    repo: Repository, sample_tree: Path, tmp_path: Path
) -> None:
    result = repo.backup(stcore.sources_for_paths([str(sample_tree)]))
    assert result.errors == ()
    restored = repo.restore(result.manifest.id, tmp_path / "out")
    assert (restored.files, restored.symlinks) == (9, 3)
    assert snapshot_of_tree(tmp_path / "out" / "sample") == snapshot_of_tree(sample_tree)


def test_cli_round_trip_is_byte_for_byte(sample_tree: Path, tmp_path: Path) -> None:
    env = {"STCORE_REPO": str(tmp_path / "repo")}
    assert run_cli("init", env=env).returncode == 0
    backup = run_cli("backup", "--json", "--tag", "nightly", str(sample_tree), env=env)
    assert backup.returncode == 0, backup.stderr
    snapshot_id = json.loads(backup.stdout)["id"]
    restore = run_cli("restore", snapshot_id[-8:], "--target", str(tmp_path / "out"), env=env)
    assert restore.returncode == 0, restore.stderr
    assert snapshot_of_tree(tmp_path / "out" / "sample") == snapshot_of_tree(sample_tree)
    listing = json.loads(run_cli("snapshots", "--json", "--tag", "nightly", env=env).stdout)
    assert [s["id"] for s in listing] == [snapshot_id]


def test_restore_can_select_a_source_and_include_globs(repo: Repository, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    (one / "sub").mkdir(parents=True)
    two.mkdir()
    (one / "sub" / "keep.json").write_text("{}")
    (one / "drop.txt").write_text("x")
    (two / "other.txt").write_text("y")
    repo.backup(stcore.sources_for_paths([str(one), str(two)]))
    repo.restore("latest", tmp_path / "out", sources=["one"], include=["*.json"])
    restored = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*"))
    assert restored == ["one", "one/sub", "one/sub/keep.json"]


def test_dump_writes_one_file_to_stdout(sample_tree: Path, tmp_path: Path) -> None:
    env = {"STCORE_REPO": str(tmp_path / "repo")}
    run_cli("init", env=env)
    run_cli("backup", str(sample_tree), env=env)
    dumped = run_cli("dump", "latest", "sample", "a/hello.txt", env=env)
    assert dumped.returncode == 0
    assert dumped.stdout == "hello world\n"


def test_snapshot_view_reads_lazily(repo: Repository, sample_tree: Path) -> None:
    repo.backup(stcore.sources_for_paths([str(sample_tree)]))
    view = repo.snapshot("latest").sources["sample"]
    assert view.read_text("a/hello.txt") == "hello world\n"
    assert view.read_json("doc.json") == {"k": list(range(100))}
    assert {f.path for f in view.files("a/*.txt")} == {"a/hello.txt"}


def test_catalog_sees_other_writers_and_rebuilds(repo: Repository, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("x")
    first = repo.backup(stcore.sources_for_paths([str(source)])).manifest
    other = stcore.open_repository(repo.location)  # another process, as far as the catalog knows
    second = other.backup(stcore.sources_for_paths([str(source)])).manifest
    reopened = stcore.open_repository(repo.location)
    assert [m.id for m in reopened.snapshots()] == [second.id, first.id]
    result = run_cli("--repo", repo.location, "catalog", "rebuild")
    assert result.returncode == 0 and "2 snapshots" in result.stdout
    (Path(repo.location) / "snapshots" / first.id).unlink()  # forgotten elsewhere
    assert [m.id for m in stcore.open_repository(repo.location).snapshots()] == [second.id]


def test_snapshot_filters_by_source_type_host_and_time(repo: Repository, tmp_path: Path) -> None:
    import datetime as dt

    (tmp_path / "doc.json").write_text("{}")
    json_source = stcore.make_source("doc", "json", {"path": str(tmp_path / "doc.json")})
    old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    repo.backup([json_source], time=old, hostname="alpha", tags=["a"])
    files_source = stcore.sources_for_paths([str(tmp_path / "doc.json")])
    repo.backup(files_source, hostname="beta")
    assert [m.host for m in repo.snapshots(source_type="json")] == ["alpha"]
    assert [m.host for m in repo.snapshots(host="beta")] == ["beta"]
    assert [m.host for m in repo.snapshots(until=old)] == ["alpha"]
    assert [m.host for m in repo.snapshots(since=old + dt.timedelta(days=1))] == ["beta"]
    assert [m.host for m in repo.snapshots(tags=["a"])] == ["alpha"]
    assert repo.resolve("latest").host == "beta"
    assert repo.snapshots()[1].id.startswith("20260101T000000Z-")
