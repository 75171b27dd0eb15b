"""Restore into a target that already has things: every overwrite mode, type conflicts, --delete,
--dry-run, and symlinks planted to lead outside, through the API and the CLI."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stcore
from stcore.errors import RestoreError
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.helpers import assert_one_line_error
from tests.trees import snapshot_of_tree

MODES = ("always", "if-changed", "if-newer", "never")
OLD = 1_600_000_000_000_000_000  # the snapshot's mtimes
NEWER = OLD + 10**12


def _state(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything below ``root`` (the root too): type, mode, mtime, content or link target."""
    found: dict[str, tuple[object, ...]] = {".": ("dir", root.lstat().st_mtime_ns)}
    found.update(snapshot_of_tree(root))
    return found


def _backed_up(tmp_path: Path) -> tuple[Repository, Path]:
    """A snapshot of ``src``: a.txt, sub/b.txt, link -> a.txt, dir/ with c.txt, all at OLD."""
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "dir").mkdir()
    (source / "a.txt").write_text("snapshot a\n")
    (source / "sub" / "b.txt").write_text("snapshot b\n")
    (source / "dir" / "c.txt").write_text("snapshot c\n")
    os.symlink("a.txt", source / "link")
    for path in sorted(source.rglob("*"), reverse=True):
        os.utime(path, ns=(OLD, OLD), follow_symlinks=False)
    repo = stcore.init_repository(str(tmp_path / "repo"))
    repo.backup(stcore.sources_for_paths([str(source)]))
    return repo, source


def _restored(repo: Repository, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    repo.restore("latest", out)
    return out / "src"


def _actions(result: stcore.RestoreResult) -> dict[str, str]:
    return {a.path: a.action for a in result.actions}


@pytest.mark.parametrize("mode", MODES)
def test_an_unchanged_target_is_kept_except_with_always(tmp_path: Path, mode: str) -> None:
    repo, source = _backed_up(tmp_path)
    out = _restored(repo, tmp_path)
    (tmp_path / "links").mkdir()
    files = sorted(p for p in out.rglob("*") if p.is_file() and not p.is_symlink())
    for number, path in enumerate(files):
        os.link(path, tmp_path / "links" / str(number))  # holds each inode: a hard link
    before = {p: p.lstat().st_ino for p in files}
    result = repo.restore("latest", tmp_path / "out", overwrite=mode)  # type: ignore[arg-type]
    assert snapshot_of_tree(out) == snapshot_of_tree(source)
    after = {p: p.lstat().st_ino for p in files}
    if mode == "always":
        assert result.overwritten == 4 and result.kept == 3  # 3 files, 1 link; src, sub, dir
        assert all(before[p] != after[p] for p in before)  # new files, the links untouched
        assert all(p.stat().st_nlink == 1 for p in (tmp_path / "links").iterdir())
        assert (tmp_path / "links" / "0").read_text() == "snapshot a\n"
    else:
        assert (result.overwritten, result.kept, result.skipped) == (0, 7, 0)
        assert before == after and result.bytes == 0 and result.actions == ()


@pytest.mark.parametrize("mode", MODES)
def test_a_file_edited_in_the_target(tmp_path: Path, mode: str) -> None:
    repo, _ = _backed_up(tmp_path)
    out = _restored(repo, tmp_path)
    (out / "a.txt").write_text("my edit, newer than the snapshot\n")
    result = repo.restore("latest", tmp_path / "out", overwrite=mode)  # type: ignore[arg-type]
    replaced = mode in ("always", "if-changed")
    expected = "snapshot a\n" if replaced else "my edit, newer than the snapshot\n"
    assert (out / "a.txt").read_text() == expected
    assert _actions(result)["src/a.txt"] == ("overwrite" if replaced else "skip")
    assert result.skipped == (0 if replaced else 1)


@pytest.mark.parametrize("mode", MODES)
def test_an_edit_that_kept_size_and_mtime_is_still_seen(tmp_path: Path, mode: str) -> None:
    """A tool that preserves mtimes (cp -p, rsync -t) must not hide an edit from if-changed."""
    repo, _ = _backed_up(tmp_path)
    out = _restored(repo, tmp_path)
    (out / "a.txt").write_text("snapshot A\n")  # same size
    os.utime(out / "a.txt", ns=(OLD, OLD))
    result = repo.restore("latest", tmp_path / "out", overwrite=mode)  # type: ignore[arg-type]
    replaced = mode in ("always", "if-changed")
    assert (out / "a.txt").read_text() == ("snapshot a\n" if replaced else "snapshot A\n")
    assert _actions(result)["src/a.txt"] == ("overwrite" if replaced else "skip")


@pytest.mark.parametrize("mode", MODES)
def test_an_older_file_in_the_target(tmp_path: Path, mode: str) -> None:
    repo, _ = _backed_up(tmp_path)
    out = _restored(repo, tmp_path)
    (out / "a.txt").write_text("older\n")
    os.utime(out / "a.txt", ns=(OLD - 10**12, OLD - 10**12))
    result = repo.restore("latest", tmp_path / "out", overwrite=mode)  # type: ignore[arg-type]
    replaced = mode != "never"
    assert (out / "a.txt").read_text() == ("snapshot a\n" if replaced else "older\n")
    assert _actions(result)["src/a.txt"] == ("overwrite" if replaced else "skip")
    assert result.overwritten == {"always": 4, "never": 0}.get(mode, 1)


def _plant(out: Path, kind: str, mtime: int, outside: Path) -> None:
    """Put a ``kind`` at out/link (where the snapshot has a symlink) and out/dir (a directory)
    and out/a.txt (a file)."""
    for name in ("link", "dir", "a.txt"):
        path = out / name
        if kind == "empty dir":
            path.mkdir()
        elif kind == "full dir":
            (path / "inner").mkdir(parents=True)
            (path / "inner" / "x").write_text("x")
        elif kind == "file":
            path.write_text("a file\n")
        elif kind == "symlink to outside":
            os.symlink(outside, path)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["empty dir", "full dir", "file", "symlink to outside"])
@pytest.mark.parametrize("delete", [False, True])
def test_type_conflicts_in_every_mode(tmp_path: Path, mode: str, kind: str, delete: bool) -> None:
    repo, source = _backed_up(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("outside\n")
    out = tmp_path / "out" / "src"
    out.mkdir(parents=True)
    for mtime in (OLD - 10**12, NEWER) if mode == "if-newer" else (NEWER,):
        subprocess.run(["rm", "-rf", str(out)], check=True)
        out.mkdir()
        # where the snapshot has a directory, a directory is no conflict
        _plant(out, kind, mtime, outside)
        planted = {n: (out / n).lstat() for n in ("link", "dir", "a.txt")}
        before = _state(tmp_path / "out")
        conflicts = ["link", "a.txt"] if kind.endswith("dir") else ["link", "dir", "a.txt"]
        replace = mode in ("always", "if-changed") or (mode == "if-newer" and mtime < OLD)
        if kind == "symlink to outside":
            conflicts.remove("link")  # a symlink where a symlink goes: another target
        if replace and kind == "full dir" and not delete:
            with pytest.raises(RestoreError, match="--delete"):
                repo.restore("latest", tmp_path / "out", overwrite=mode, delete=delete)  # type: ignore[arg-type]
            assert _state(tmp_path / "out") == before  # refused before writing anything
            continue
        result = repo.restore("latest", tmp_path / "out", overwrite=mode, delete=delete)  # type: ignore[arg-type]
        assert sorted(os.listdir(outside)) == ["keep.txt"]
        assert (outside / "keep.txt").read_text() == "outside\n"
        actions = _actions(result)
        if replace:
            assert snapshot_of_tree(out) == snapshot_of_tree(source)
            for name in conflicts:
                assert actions[f"src/{name}"] == "overwrite", actions
        else:
            for name in conflicts:
                assert actions[f"src/{name}"] == "skip", actions
                assert (out / name).lstat().st_ino == planted[name].st_ino
            if kind in ("file", "symlink to outside"):  # dir/ skipped: nothing below restored
                assert not (out / "dir" / "c.txt").exists()
        if kind == "full dir" and delete:  # inner/ and inner/x: in dir/, link/ and a.txt/
            assert result.deleted == (6 if replace else 2)


def test_a_symlink_to_a_directory_outside_is_replaced_never_written_through(
    tmp_path: Path,
) -> None:
    repo, source = _backed_up(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out" / "src"
    out.mkdir(parents=True)
    os.symlink(outside, out / "sub")  # where the snapshot has a directory
    os.symlink(outside, out / "a.txt")  # where it has a file
    result = repo.restore("latest", tmp_path / "out")
    assert list(outside.iterdir()) == []
    assert not (out / "sub").is_symlink() and (out / "sub" / "b.txt").read_text() == "snapshot b\n"
    assert snapshot_of_tree(out) == snapshot_of_tree(source)
    assert result.overwritten == 2


def test_delete_removes_extras_only_below_the_restored_sources(tmp_path: Path) -> None:
    repo, source = _backed_up(tmp_path)
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "precious").write_text("outside\n")
    target = tmp_path / "out"
    out = target / "src"
    (out / "sub" / "extra-dir" / "nested").mkdir(parents=True)
    (out / "sub" / "extra-dir" / "nested" / "f").write_text("x")
    (out / "extra.txt").write_text("x")
    os.symlink(outside, out / "extra-link")  # a link to a directory: removed, not followed
    os.symlink(outside / "deep", out / "sub" / "link-to-deep")
    (target / "other-source").mkdir()
    (target / "other-source" / "keep.txt").write_text("not ours\n")
    (target / "loose.txt").write_text("not ours\n")
    result = repo.restore("latest", target, delete=True)
    assert snapshot_of_tree(out) == snapshot_of_tree(source)
    assert (outside / "deep" / "precious").read_text() == "outside\n"
    assert (target / "other-source" / "keep.txt").read_text() == "not ours\n"
    assert (target / "loose.txt").read_text() == "not ours\n"
    assert result.deleted == 6  # extra.txt, extra-link, link-to-deep, extra-dir/ + 2 inside
    assert {a.path for a in result.actions if a.action == "delete"} == {
        "src/extra.txt", "src/extra-link", "src/sub/link-to-deep", "src/sub/extra-dir",
    }  # fmt: skip


def test_delete_with_include_removes_only_what_the_globs_select(tmp_path: Path) -> None:
    repo, _ = _backed_up(tmp_path)
    out = tmp_path / "out" / "src"
    (out / "sub" / "x" / "y").mkdir(parents=True)
    (out / "sub" / "x" / "y" / "old.txt").write_text("matches: goes, and y/ with it")
    (out / "sub" / "x" / "keep.bin").write_text("no glob matches: stays, and x/ with it")
    (out / "notes.md").write_text("stays")
    (out / "old.txt").write_text("goes")
    result = repo.restore("latest", tmp_path / "out", include=["*.txt"], delete=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "a.txt", "dir", "dir/c.txt", "notes.md", "sub", "sub/b.txt", "sub/x", "sub/x/keep.bin",
    ]  # fmt: skip
    assert {a.path for a in result.actions if a.action == "delete"} == {
        "src/old.txt", "src/sub/x/y/old.txt", "src/sub/x/y",
    }  # fmt: skip


def test_a_dry_run_writes_nothing_and_lists_what_a_real_run_does(tmp_path: Path) -> None:
    repo, source = _backed_up(tmp_path)
    target = tmp_path / "out"
    out = _restored(repo, tmp_path)
    (out / "a.txt").write_text("edited\n")
    subprocess.run(["rm", "-rf", str(out / "dir")], check=True)
    (out / "sub" / "extra").mkdir()
    (out / "sub" / "extra" / "e.txt").write_text("e")
    os.symlink(tmp_path, out / "link2")
    before = _state(target)
    dry = repo.restore("latest", target, delete=True, dry_run=True)
    assert _state(target) == before
    assert dry.dry_run and {(a.action, a.path) for a in dry.actions} == {
        ("keep", "src"), ("overwrite", "src/a.txt"), ("create", "src/dir"),
        ("create", "src/dir/c.txt"), ("keep", "src/link"), ("delete", "src/link2"),
        ("keep", "src/sub"), ("keep", "src/sub/b.txt"), ("delete", "src/sub/extra"),
    }  # fmt: skip
    real = repo.restore("latest", target, delete=True)
    assert snapshot_of_tree(out) == snapshot_of_tree(source)
    counts = ("created", "overwritten", "kept", "skipped", "deleted", "files", "bytes")
    assert [getattr(dry, c) for c in counts] == [getattr(real, c) for c in counts]
    assert [a for a in dry.actions if a.action in ("overwrite", "delete")] == list(real.actions)
    assert dry.deleted == 3  # link2, extra/ and e.txt in it


def test_a_dry_run_into_a_missing_target_creates_nothing(tmp_path: Path) -> None:
    repo, _ = _backed_up(tmp_path)
    result = repo.restore("latest", tmp_path / "no" / "such", dry_run=True)
    assert not (tmp_path / "no").exists()
    assert result.created == 7 and all(a.action == "create" for a in result.actions)


def test_a_deep_directory_in_the_way_is_removed_with_delete(tmp_path: Path) -> None:
    repo, source = _backed_up(tmp_path)
    out = tmp_path / "out" / "src"
    out.mkdir(parents=True)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir("a.txt", dir_fd=fd)  # 2,000 levels where the snapshot has a file: > PATH_MAX
    for _ in range(2000):
        child = os.open("a.txt" if _ == 0 else "d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
        os.mkdir("d", dir_fd=fd)
    os.close(fd)
    try:
        result = repo.restore("latest", tmp_path / "out", delete=True)
        assert snapshot_of_tree(out) == snapshot_of_tree(source)
        assert result.deleted == 2000
    finally:
        subprocess.run(["rm", "-rf", str(tmp_path / "out")], check=True)


def test_modes_that_lock_the_owner_out_are_set_last(tmp_path: Path) -> None:
    source = tmp_path / "src"
    path = source
    for depth in range(40):  # deeper than the walker keeps open: climbs back through ".."
        path = path / f"l{depth}"
    path.mkdir(parents=True)
    (path / "f.txt").write_text("deep\n")
    repo = stcore.init_repository(str(tmp_path / "repo"))
    for level in [source, *source.rglob("l*")]:
        if level.name in ("l3", "l20", "l39"):
            level.chmod(0o300)  # write and search, no read
    repo.backup(stcore.sources_for_paths([str(source)]))
    repo.restore("latest", tmp_path / "out")
    assert snapshot_of_tree(tmp_path / "out" / "src") == snapshot_of_tree(source)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").rglob("l*")}
    assert modes["l3"] == modes["l20"] == modes["l39"] == 0o300


# --- any target, any snapshot ----------------------------------------------------------------

NAMES = ["a", "b", "c"]


def _random_tree(rng: random.Random, root: Path, outside: Path, depth: int = 0) -> None:
    root.mkdir()
    for name in rng.sample(NAMES, rng.randint(0, len(NAMES))):
        path = root / name
        kind = rng.choice(["file", "file", "dir", "link", "outside"] if depth < 2 else ["file"])
        if kind == "file":
            path.write_bytes(rng.choice([b"", b"one", b"two", b"x" * 3000]))
            path.chmod(rng.choice([0o644, 0o600, 0o755]))
        elif kind == "dir":
            _random_tree(rng, path, outside, depth + 1)
        elif kind == "link":
            os.symlink(rng.choice(["a", "../b", "/nowhere"]), path)
        else:
            os.symlink(outside, path)
        mtime = OLD + rng.choice([-1, 0, 1]) * 10**12
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.sampled_from(["always", "if-changed"]))
def test_any_target_becomes_the_snapshot_with_delete(
    tmp_path_factory: pytest.TempPathFactory, rng: random.Random, mode: str
) -> None:
    base = tmp_path_factory.mktemp("any")
    outside = base / "outside"
    outside.mkdir()
    (outside / "keep").write_text("outside\n")
    _random_tree(rng, base / "src", outside)
    os.utime(base / "src", ns=(OLD, OLD))
    repo = stcore.init_repository(str(base / "repo"))
    repo.backup(stcore.sources_for_paths([str(base / "src")]))
    target = base / "out"
    target.mkdir()
    _random_tree(rng, target / "src", outside)
    copy = target / "src" / "c"
    if rng.random() < 0.3 and not os.path.lexists(copy):  # an exact copy of the snapshot there
        subprocess.run(["cp", "-a", str(base / "src"), str(copy)], check=True)
    repo.restore("latest", target, overwrite=mode, delete=True)  # type: ignore[arg-type]
    assert snapshot_of_tree(target / "src") == snapshot_of_tree(base / "src")
    assert sorted(os.listdir(outside)) == ["keep"]
    assert (outside / "keep").read_text() == "outside\n"
    again = repo.restore("latest", target, delete=True)
    assert (again.overwritten, again.deleted, again.created) == (0, 0, 0)
    repo.close()
    subprocess.run(["rm", "-rf", str(base)], check=True)


# --- the command line ------------------------------------------------------------------------


def test_cli_dry_run_lists_actions_and_json_gives_them(tmp_path: Path) -> None:
    repo, _ = _backed_up(tmp_path)
    out = _restored(repo, tmp_path)
    (out / "a.txt").write_text("edited\n")
    (out / "extra").write_text("x")
    before = _state(tmp_path / "out")
    args = ["--repo", repo.location, "restore", "latest", "--target", str(tmp_path / "out")]
    human = run_cli(*args, "--dry-run", "--delete")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert "overwrite src/a.txt" in lines and "delete    src/extra" in lines
    assert "keep      src/sub/b.txt" in lines
    assert lines[-1] == "0 created, 1 overwritten, 6 kept, 0 skipped, 1 deleted"
    assert lines[-2].startswith("would restore 3 files")
    assert all(len(line) <= 80 for line in lines if str(tmp_path) not in line)
    as_json = json.loads(run_cli(*args, "-n", "--delete", "--json").stdout)
    assert as_json["dry_run"] is True and as_json["overwritten"] == 1
    assert {"action": "delete", "path": "src/extra", "type": "file", "reason": ""} in as_json[
        "actions"
    ]
    assert _state(tmp_path / "out") == before
    real = run_cli(*args, "--overwrite", "never", "--json")
    document = json.loads(real.stdout)
    assert document["skipped"] == 1 and document["actions"] == [
        {"action": "skip", "path": "src/a.txt", "type": "file", "reason": "exists"}
    ]
    assert (out / "a.txt").read_text() == "edited\n"


def test_cli_refusals_are_one_line(tmp_path: Path) -> None:
    repo, _ = _backed_up(tmp_path)
    out = tmp_path / "out" / "src"
    (out / "a.txt" / "inner").mkdir(parents=True)
    args = ["--repo", repo.location, "restore", "latest", "--target"]
    assert_one_line_error(run_cli(*args, str(tmp_path / "out")), "a.txt", "--delete")
    assert list((out / "a.txt").iterdir()) == [out / "a.txt" / "inner"]
    (tmp_path / "a-file").write_text("x")
    assert_one_line_error(run_cli(*args, str(tmp_path / "a-file" / "in")), "not a directory")
    bad = run_cli(*args, str(tmp_path / "out"), "--overwrite", "sometimes")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
