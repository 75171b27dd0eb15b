"""Bad input gets a clear error and loses nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import msgspec
import pytest

import stcore
from stcore.errors import (
    CorruptObjectError,
    FormatVersionError,
    ObjectNotFoundError,
    RestoreError,
    SourceError,
    UnknownPluginError,
)
from stcore.models import SnapshotManifest, SourceSummary, TreeNode, new_snapshot_id
from stcore.repo.format import encode_index, encode_tree
from stcore.repo.packer import Packer
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.helpers import backup_small, only_pack, rewrite_config


def test_flipped_byte_fails_restore_with_pack_and_blob(repo: Repository, tmp_path: Path) -> None:
    backup_small(repo, tmp_path)
    pack = only_pack(repo)
    body = bytearray(pack.read_bytes())
    body[100] ^= 0xFF
    pack.write_bytes(bytes(body))
    with pytest.raises(CorruptObjectError, match=rf"pack data/../{pack.name}, blob [0-9a-f]+"):
        repo.restore("latest", tmp_path / "out")


def test_truncated_pack_gives_a_clear_error(repo: Repository, tmp_path: Path) -> None:
    backup_small(repo, tmp_path)
    pack = only_pack(repo)
    pack.write_bytes(pack.read_bytes()[:1000])
    assert any("truncated" in e for e in repo.check().errors)
    with pytest.raises(CorruptObjectError, match="truncated"):
        repo.restore("latest", tmp_path / "out")


def test_missing_pack_gives_a_clear_error(repo: Repository, tmp_path: Path) -> None:
    backup_small(repo, tmp_path)
    only_pack(repo).unlink()
    assert any("is missing" in e for e in repo.check().errors)
    with pytest.raises(ObjectNotFoundError, match=r"is missing .*stcore check"):
        repo.restore("latest", tmp_path / "out")
    result = run_cli("--repo", repo.location, "restore", "latest", "--target", str(tmp_path / "o"))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    stcore.init_repository(str(tmp_path / "repo")).close()
    rewrite_config(tmp_path / "repo", version=99)
    with pytest.raises(FormatVersionError, match=r"format version 99.*Upgrade stcore"):
        stcore.open_repository(str(tmp_path / "repo"))
    result = run_cli("--repo", str(tmp_path / "repo"), "snapshots")
    assert result.returncode == 1
    assert "format version 99" in result.stderr and "Traceback" not in result.stderr


def test_nonexistent_source_path_is_one_line(tmp_path: Path) -> None:
    env = {"STCORE_REPO": str(tmp_path / "repo")}
    run_cli("init", env=env)
    result = run_cli("backup", str(tmp_path / "nope"), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"stcore: error: source 'nope': {tmp_path / 'nope'} does not exist"
    ]
    with pytest.raises(SourceError):
        stcore.sources_for_paths([str(tmp_path / "nope")])


def test_unknown_source_type_lists_the_installed_ones(tmp_path: Path) -> None:
    (tmp_path / "stcore.toml").write_text('[sources.x]\ntype = "nosuch"\npath = "."\n')
    run_cli("--repo", str(tmp_path / "repo"), "init")
    result = run_cli("--repo", str(tmp_path / "repo"), "backup", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "unknown source 'nosuch'" in line and "files, json, sqlite" in line


def test_unknown_backend_scheme_names_the_plugin_to_install() -> None:
    host = stcore.make_plugin_manager(entry_points=False)
    with pytest.raises(UnknownPluginError, match=r"pip install st-s3"):
        host.backends.by_scheme("s3")
    with pytest.raises(UnknownPluginError, match=r"unknown URL scheme 'ftp'"):
        host.backends.by_scheme("ftp")


# --- hostile manifests -----------------------------------------------------------------------


def _forge(repo: Repository, tmp_path: Path, nodes: list[TreeNode], source: str = "src") -> str:
    """Write a snapshot whose single source's root tree holds ``nodes`` as given."""
    packer = Packer(repo.backend, repo.codec, pack_size=1 << 20, workers=1)
    content = b"owned\n"
    content_id = repo.codec.blob_id(content)
    packer.add(content_id, "data", content)
    fixed = [
        msgspec.structs.replace(n, content=(content_id,)) if n.kind == "file" else n for n in nodes
    ]
    tree = encode_tree(fixed)
    tree_id = repo.codec.blob_id(tree)
    packer.add(tree_id, "tree", tree)
    entries = packer.finish().values()
    repo.store.write_content_addressed("index", encode_index(repo.codec, entries))
    snapshot_id = new_snapshot_id()
    manifest = SnapshotManifest(
        id=snapshot_id,
        time=dt.datetime.now(dt.UTC),
        host="attacker",
        sources={source: SourceSummary(name=source, type="files", root=tree_id)},
    )
    repo.store.write_manifest(manifest)  # an unencrypted checksum is no secret: forged as well
    return snapshot_id


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/escape.txt", "..", ".", "", "a/../../x"])
def test_manifest_paths_cannot_write_outside_the_target(tmp_path: Path, name: str) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    node = TreeNode(name=name, kind="file", mode=0o644, mtime_ns=0, size=6)
    snapshot_id = _forge(repo, tmp_path, [node])
    target = tmp_path / "deep" / "target"
    with pytest.raises(RestoreError, match="unsafe name"):
        stcore.open_repository(repo.location).restore(snapshot_id, target)
    assert not (tmp_path / "deep" / "escape.txt").exists()
    assert not list(target.rglob("*")) if target.exists() else True


def test_unsafe_source_name_is_refused(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    node = TreeNode(name="f", kind="file", mode=0o644, mtime_ns=0, size=6)
    snapshot_id = _forge(repo, tmp_path, [node], source="..")
    with pytest.raises(RestoreError, match="unsafe name"):
        repo.restore(snapshot_id, tmp_path / "target")
    assert not (tmp_path / "f").exists()


def test_symlink_and_directory_with_one_name_are_refused(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    outside = tmp_path / "outside"
    outside.mkdir()
    link = TreeNode(name="a", kind="symlink", mode=0o777, mtime_ns=0, target=str(outside))
    file = TreeNode(name="a", kind="file", mode=0o644, mtime_ns=0, size=6)
    snapshot_id = _forge(repo, tmp_path, [link, file])
    with pytest.raises(RestoreError, match="twice"):
        repo.restore(snapshot_id, tmp_path / "target")
    assert list(outside.iterdir()) == []


def test_restore_never_writes_through_a_symlink_already_in_the_target(
    repo: Repository, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "file.txt").write_text("data")
    repo.backup(stcore.sources_for_paths([str(source)]))
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    (target / "src").mkdir(parents=True)
    os.symlink(outside, target / "src" / "sub")  # planted before the restore
    repo.restore("latest", target)
    assert list(outside.iterdir()) == []
    assert (target / "src" / "sub" / "file.txt").read_text() == "data"
    assert not (target / "src" / "sub").is_symlink()


# --- unreadable files ------------------------------------------------------------------------


def test_unreadable_file_is_reported_and_the_rest_backed_up(tmp_path: Path) -> None:
    """Exit 3, the unreadable file named, every other file in the snapshot."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "ok.txt").write_text("fine")
    (source / "locked.txt").write_text("secret")
    (source / "locked.txt").chmod(0o000)
    (source / "zz-also-ok.txt").write_text("fine too")
    env = {"STCORE_REPO": str(tmp_path / "repo")}
    assert run_cli("init", env=env).returncode == 0
    result = run_cli("backup", "--json", str(source), env=env, unprivileged=True)
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["partial"] is True
    assert [path for path, _ in report["errors"]] == ["src:locked.txt"]
    assert report["files"] == 2
    listing = run_cli("show", "latest", "--json", "--files", env=env)
    paths = {f["path"] for f in json.loads(listing.stdout)["files"]["src"]}
    assert paths == {"ok.txt", "zz-also-ok.txt"}
    human = run_cli("backup", str(source), env=env, unprivileged=True)
    assert human.returncode == 3
    assert "could not read src:locked.txt: Permission denied" in human.stderr
