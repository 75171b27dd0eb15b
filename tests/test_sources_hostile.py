"""The files source on a hostile host: a path swapped, grown or shrunk between scan and read is
listed and never read as something else; special files are listed. (Depth, odd names and live
databases, end to end: test_hostile_host.py.)

The race is scripted deterministically: ``FilesSource.before_open`` runs between the scan and the
read of each file, and the tests change the file exactly there.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import stcore
from stcore.builtins.sources import FilesSource
from stcore.repository import Repository

SECRET = b"root-only secret 7f3a9c"


def _source(root: Path, hook: Callable[[str], None] | None = None) -> FilesSource:
    source = stcore.make_source("data", "files", {"path": str(root)})
    assert isinstance(source, FilesSource)
    source.before_open = hook
    return source


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.txt").write_text("keep me\n")
    (root / "victim.bin").write_bytes(b"v" * 300_000)
    (root / "z.txt").write_text("and me\n")
    return root


def _stored_bytes(repo: Repository) -> bytes:
    return b"".join(p.read_bytes() for p in Path(repo.location).rglob("*") if p.is_file())


def _when(name: str, action: Callable[[Path], None]) -> Callable[[str], None]:
    def hook(path: str) -> None:
        if os.path.basename(path) == name:
            action(Path(path))

    return hook


def _swap_for_symlink(target: Path) -> Callable[[Path], None]:
    def swap(path: Path) -> None:
        path.unlink()
        path.symlink_to(target)

    return swap


def _assert_listed_and_rest_kept(repo: Repository, result: stcore.BackupResult, why: str) -> None:
    assert result.partial
    (problem,) = result.errors
    assert problem[0] == "data:victim.bin" and why in problem[1], problem
    view = repo.snapshot(result.manifest.id).sources["data"]
    assert sorted(f.path for f in view.files()) == ["a.txt", "z.txt"]


def test_a_file_swapped_for_a_symlink_is_listed_and_its_target_never_read(
    repo: Repository, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    root = _tree(tmp_path)
    result = repo.backup([_source(root, _when("victim.bin", _swap_for_symlink(secret)))])
    _assert_listed_and_rest_kept(repo, result, "replaced by a symlink")
    assert SECRET not in _stored_bytes(repo)


def test_a_file_swapped_for_a_fifo_neither_blocks_nor_is_read(
    repo: Repository, tmp_path: Path
) -> None:
    def to_fifo(path: Path) -> None:
        path.unlink()
        os.mkfifo(path)

    root = _tree(tmp_path)
    outcome: list[stcore.BackupResult] = []
    worker = threading.Thread(
        target=lambda: outcome.append(repo.backup([_source(root, _when("victim.bin", to_fifo))]))
    )
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the backup blocked on a FIFO"
    _assert_listed_and_rest_kept(repo, outcome[0], "replaced after the scan")


def test_a_file_swapped_for_a_link_to_dev_zero_is_not_read(
    repo: Repository, tmp_path: Path
) -> None:
    root = _tree(tmp_path)
    result = repo.backup([_source(root, _when("victim.bin", _swap_for_symlink(Path("/dev/zero"))))])
    _assert_listed_and_rest_kept(repo, result, "replaced by a symlink")


def test_a_file_replaced_by_another_file_is_not_read(repo: Repository, tmp_path: Path) -> None:
    def replace(path: Path) -> None:
        other = path.with_name("other")
        other.write_bytes(SECRET)
        os.replace(other, path)

    root = _tree(tmp_path)
    result = repo.backup([_source(root, _when("victim.bin", replace))])
    _assert_listed_and_rest_kept(repo, result, "replaced after the scan")
    assert SECRET not in _stored_bytes(repo)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda p: os.truncate(p, 100_000), "shrank while being read"),
        (lambda p: p.open("ab").write(b"more" * 1000), "grew while being read"),
        (lambda p: (p.write_bytes(b"w" * 300_000), os.utime(p, ns=(1, 1))), "modified"),
    ],
    ids=["shrunk", "grown", "rewritten"],
)
def test_a_file_that_changes_between_scan_and_read_is_listed_not_stored(
    repo: Repository, tmp_path: Path, change: Callable[[Path], object], why: str
) -> None:
    root = _tree(tmp_path)
    result = repo.backup([_source(root, _when("victim.bin", change))])
    _assert_listed_and_rest_kept(repo, result, why)
