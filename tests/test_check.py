"""Bad input gets a clear error and loses nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import stcore
from stcore.errors import (
    CorruptObjectError,
)
from stcore.repo.format import object_key
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.helpers import backup_small, only_pack
from tests.test_reader import count_reads, data_reads, small_blob_repository


def test_flipped_byte_is_named_by_check_read_data(repo: Repository, tmp_path: Path) -> None:
    backup_small(repo, tmp_path)
    pack = only_pack(repo)
    body = bytearray(pack.read_bytes())
    body[100] ^= 0xFF
    pack.write_bytes(bytes(body))
    result = repo.check(read_data=True)
    assert not result.ok
    text = "\n".join(result.errors)
    assert pack.name in text
    assert "does not match its hash" in text
    assert "blob " in text  # the damaged blob is named too


def test_cli_check_exits_one_and_names_the_pack(repo: Repository, tmp_path: Path) -> None:
    backup_small(repo, tmp_path)
    pack = only_pack(repo)
    body = bytearray(pack.read_bytes())
    body[10] ^= 0x01
    pack.write_bytes(bytes(body))
    result = run_cli("--repo", repo.location, "check", "--read-data")
    assert result.returncode == 1
    assert pack.name in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_index_is_reported(repo: Repository, tmp_path: Path) -> None:
    backup_small(repo, tmp_path)
    (index_key,) = [info.key for info in repo.backend.list("index/")]
    path = Path(repo.location) / index_key
    path.write_bytes(path.read_bytes()[:-7])
    reopened = stcore.open_repository(repo.location)
    assert not reopened.check().ok
    with pytest.raises(CorruptObjectError, match=index_key):
        reopened.restore("latest", tmp_path / "out")


@pytest.mark.parametrize("extra", ["{pack}.bak", ".DS_Store", "zzzz.tmp", "{pack} (conflict)"])
def test_stray_files_in_data_are_named_not_a_crash_and_never_deleted(
    repo: Repository, tmp_path: Path, extra: str
) -> None:
    """A file no stcore wrote under data/ (a Finder or sync tool leaves them) is warned about
    by check in every mode, skipped by prune and repair, and left where it is."""
    backup_small(repo, tmp_path)
    pack = only_pack(repo)
    stray = pack.parent / extra.format(pack=pack.name)
    stray.write_bytes(b"not a pack")
    for args in ([], ["--read-data"], ["--read-data-subset", "1/2"], ["--read-data-subset", "2/2"]):
        result = run_cli("--repo", repo.location, "check", *args)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "not a pack stcore wrote" in result.stdout + result.stderr
    assert run_cli("--repo", repo.location, "prune").returncode == 0
    assert run_cli("--repo", repo.location, "repair", "index").returncode == 0
    assert stray.read_bytes() == b"not a pack"
    assert repo.check(read_data=True).ok


def test_a_check_stopped_midway_reads_no_more_packs(tmp_path: Path) -> None:
    """Packs are read on another thread, queued all at once: a check stopped by its caller
    (Ctrl-C raises in the progress callback's thread) must not go on reading them; only the
    reads under way when it stopped may finish."""
    repo = small_blob_repository(tmp_path / "repo", tmp_path / "src", files=120)
    packs = len(list(repo.backend.list("data/")))
    assert packs > 10
    reads = count_reads(repo)
    at_stop: list[int] = []

    def whole_packs() -> int:
        return sum(1 for _, _, length in data_reads(reads) if length is None)

    def progress(event: str, amount: int) -> None:
        if event == "pack":
            at_stop.append(whole_packs())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        repo.check(read_data=True, progress=progress)
    assert whole_packs() <= at_stop[0] + 2 < packs  # under way, and one started meanwhile
    repo.close()


def test_a_damaged_tree_is_named_and_the_walk_goes_on(tmp_path: Path) -> None:
    """A damaged tree is named, and the trees beside and below the others are still checked
    (a second damaged tree, deeper in a sibling, is named too)."""
    source = tmp_path / "src"
    for name in ("a", "b", "c"):
        (source / name / "deeper").mkdir(parents=True)
        (source / name / "f.txt").write_text(f"file in {name}\n")
        (source / name / "deeper" / "g.txt").write_text(f"deeper in {name}\n")
    repo = stcore.init_repository(str(tmp_path / "repo"))
    repo.backup(stcore.sources_for_paths([str(source)]))
    root = repo.snapshot("latest").manifest.sources["src"].root
    subtrees = {n.name: n.subtree for n in repo.store.read_tree(root)}
    deeper_c = next(n.subtree for n in repo.store.read_tree(subtrees["c"]) if n.kind == "dir")
    damaged = [subtrees["b"], deeper_c]
    for tree_id in damaged:
        assert tree_id is not None
        entry = repo.index[tree_id]
        path = Path(repo.location) / object_key("data", entry.pack_id)
        body = bytearray(path.read_bytes())
        body[entry.offset + entry.stored_length // 2] ^= 0xFF
        path.write_bytes(bytes(body))
    repo.close()
    result = stcore.open_repository(str(tmp_path / "repo")).check()
    unreadable = [e for e in result.errors if "cannot be read" in e]
    assert len(unreadable) == 2, result.errors
    for tree_id in damaged:
        assert tree_id is not None
        assert sum(tree_id.hex() in e for e in unreadable) == 1
