"""A repository that survives damage: prune never deletes what it cannot account for, one backup
heals a damaged blob, and the repair commands rebuild what can be rebuilt."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import stcore
from stcore.errors import PruneRefusedError
from stcore.repo.format import encode_index, object_key
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.helpers import flip_bit
from tests.trees import snapshot_of_tree

MIB = 1 << 20


def _tree(root: Path, seed: int, files: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = __import__("random").Random(seed)
    for number in range(files):
        (root / f"f{number}.bin").write_bytes(rng.randbytes(3 * MIB))
    return root


def _small_packs(tmp_path: Path) -> Repository:
    return stcore.init_repository(str(tmp_path / "repo"), pack_size=2 * MIB)


def _restored_equals(repo: Repository, ref: str, source: Path, tmp_path: Path) -> bool:
    target = tmp_path / f"restore-{ref}-{os.urandom(3).hex()}"
    repo.restore(ref, target)
    (name,) = os.listdir(target)
    return snapshot_of_tree(target / name) == snapshot_of_tree(source)


def test_prune_never_deletes_the_data_of_a_kept_snapshot_when_an_index_object_is_lost(
    tmp_path: Path,
) -> None:
    repo = _small_packs(tmp_path)
    kept_source = _tree(tmp_path / "a", 1)
    first = repo.backup(stcore.sources_for_paths([str(kept_source)])).manifest
    (kept_source / "new.bin").write_bytes(os.urandom(2 * MIB))
    kept = repo.backup(stcore.sources_for_paths([str(kept_source)])).manifest
    repo.forget([first.id])
    # Lose the index object of the first backup: it holds the data the kept snapshot shares
    # (its trees are in the other one, so walking the snapshot still works). Prune used to see
    # those packs as unreferenced and delete them.
    kept_root = next(iter(kept.sources.values())).root
    (lost,) = [
        i.key
        for i in repo.backend.list("index/")
        if not any(e.blob_id == kept_root for e in repo.store.read_index_entries(i.key))
    ]
    repo.backend.delete(lost)
    packs_before = {i.key for i in repo.backend.list("data/")}

    with pytest.raises(PruneRefusedError, match=r"nothing was deleted.*stcore repair index"):
        repo.prune()
    assert {i.key for i in repo.backend.list("data/")} == packs_before

    result = run_cli("--repo", repo.location, "prune")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "repair index" in result.stderr

    repaired = repo.repair_index()
    assert not repaired.unreadable and repaired.packs == len(packs_before)
    repo.prune()
    assert repo.check(read_data=True).ok
    assert _restored_equals(repo, kept.id, kept_source, tmp_path)


def test_a_flipped_bit_in_a_pack_is_healed_by_one_backup_of_the_unchanged_source(
    tmp_path: Path,
) -> None:
    repo = _small_packs(tmp_path)
    source = _tree(tmp_path / "src", 3)
    repo.backup(stcore.sources_for_paths([str(source)]))
    entry = next(e for e in repo.index.values() if e.blob_type == "data")
    flip_bit(Path(repo.location) / f"data/{entry.pack_id.hex()[:2]}/{entry.pack_id.hex()}",
             (entry.offset + 40) * 8)  # fmt: skip

    found = repo.check(read_data=True)
    assert not found.ok and any(entry.blob_id.hex() in e for e in found.errors)

    healed = repo.backup(stcore.sources_for_paths([str(source)])).manifest
    assert healed.added_bytes >= entry.raw_length // 2  # the damaged blob was stored again
    with stcore.open_repository(repo.location) as fresh:
        after = fresh.check(read_data=True)
        assert after.ok, after.errors
        assert any("sound copy exists" in w for w in after.warnings)
        assert _restored_equals(fresh, healed.id, source, tmp_path)
    result = run_cli("--repo", repo.location, "check", "--read-data")
    assert result.returncode == 0, result.stderr


def test_a_lost_pack_is_healed_by_one_backup_and_prune_then_drops_the_old_copy(
    tmp_path: Path,
) -> None:
    repo = _small_packs(tmp_path)
    source = _tree(tmp_path / "src", 4)
    repo.backup(stcore.sources_for_paths([str(source)]))
    victim = sorted(i.key for i in repo.backend.list("data/"))[0]
    repo.backend.delete(victim)
    assert not repo.check().ok
    healed = repo.backup(stcore.sources_for_paths([str(source)])).manifest
    assert repo.check(read_data=True).ok
    assert _restored_equals(repo, healed.id, source, tmp_path)
    repo.prune()  # every referenced blob has a sound copy: the lost one is dropped from the index
    assert not any(repo.store.index.copies(b) for b in repo.index)
    assert repo.check(read_data=True).ok
    assert _restored_equals(repo, healed.id, source, tmp_path)


def test_repair_snapshots_rewrites_what_lost_data_and_marks_it(tmp_path: Path) -> None:
    repo = _small_packs(tmp_path)
    source = _tree(tmp_path / "src", 5)
    original = repo.backup(stcore.sources_for_paths([str(source)])).manifest
    shutil.rmtree(source)  # the source is gone: nothing can heal it
    with_trees = {e.pack_id for e in repo.index.values() if e.blob_type == "tree"}
    victim = next(e.pack_id for e in repo.index.values() if e.pack_id not in with_trees)
    repo.backend.delete(object_key("data", victim))
    repo.check()

    dry = repo.repair_snapshots(dry_run=True)
    assert [r.snapshot_id for r in dry.repaired] == [original.id]
    assert {i.key for i in repo.backend.list("snapshots/")} == {f"snapshots/{original.id}"}

    done = repo.repair_snapshots(forget=True)
    (repair,) = done.repaired
    assert repair.changes and all(
        c.startswith(("truncated file", "removed file")) for c in repair.changes
    )
    assert done.forgotten == (original.id,)
    new = repo.load_manifest(repair.new_id or "")
    assert "repaired" in new.tags and new.partial
    repo.repair_index()
    repo.prune()
    assert repo.check(read_data=True).ok
    repo.restore(new.id, tmp_path / "out")  # what is left restores


def test_check_warns_about_orphaned_packs_and_leftover_temporaries(tmp_path: Path) -> None:
    repo = _small_packs(tmp_path)
    repo.backup(stcore.sources_for_paths([str(_tree(tmp_path / "src", 6, files=1))]))
    for key in [i.key for i in repo.backend.list("index/")]:
        repo.backend.delete(key)
    repo.backup(stcore.sources_for_paths([str(_tree(tmp_path / "other", 7, files=1))]))
    temporary = Path(repo.location) / ".tmp-crashed"
    temporary.write_bytes(b"half a pack")
    os.utime(temporary, (1, 1))
    result = repo.check()
    assert any("is not in the index" in w and "stcore prune" in w for w in result.warnings)
    assert any("temporary files" in w for w in result.warnings)
    cli = run_cli("--repo", repo.location, "check")
    assert "warning:" in cli.stderr and "Traceback" not in cli.stderr


def test_check_read_data_warns_about_blobs_the_index_does_not_list(tmp_path: Path) -> None:
    repo = _small_packs(tmp_path)
    repo.backup(stcore.sources_for_paths([str(_tree(tmp_path / "src", 8, files=2))]))
    index = repo.store.load_index(cached=False)
    dropped = next(e for e in index.values() if e.blob_type == "data")
    remaining = [e for e in index.values() if e.blob_id != dropped.blob_id]
    for key in [i.key for i in repo.backend.list("index/")]:
        repo.backend.delete(key)
    repo.store.write_content_addressed("index", encode_index(repo.codec, remaining))
    result = stcore.open_repository(repo.location).check(read_data=True)
    assert any(dropped.blob_id.hex() in w and "repair index" in w for w in result.warnings)


def test_repair_packs_salvages_what_still_verifies_and_repair_snapshots_the_rest(
    tmp_path: Path,
) -> None:
    repo = _small_packs(tmp_path)
    source = _tree(tmp_path / "src", 9, files=2)
    original = repo.backup(stcore.sources_for_paths([str(source)])).manifest
    shutil.rmtree(source)
    pack_id = next(e.pack_id for e in repo.index.values() if e.blob_type == "data")
    in_pack = [e for e in repo.index.values() if e.pack_id == pack_id]
    victim = in_pack[0]
    flip_bit(Path(repo.location) / object_key("data", pack_id), (victim.offset + 20) * 8)
    assert not repo.check(read_data=True).ok

    salvaged = repo.repair_packs()
    assert salvaged.packs_repaired == (pack_id.hex(),)
    assert salvaged.blobs_lost == 1 and salvaged.blobs_salvaged == len(in_pack) - 1
    assert object_key("data", pack_id) not in {i.key for i in repo.backend.list("data/")}
    assert not repo.check(read_data=True).ok  # that one blob is gone for good

    (repair,) = repo.repair_snapshots(forget=True).repaired
    assert repair.snapshot_id == original.id and repair.changes
    assert repo.check(read_data=True).ok
    repo.restore(repair.new_id or "", tmp_path / "out")
