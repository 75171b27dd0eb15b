"""``stcore forget ... --prune``: forget, then prune, in one command (restic's meaning).

* the space only forgotten snapshots used is reclaimed, the kept ones restore, and
  ``stcore check --read-data`` passes afterwards;
* ``--dry-run`` changes nothing (every file of the repository stays as it was) and shows both
  steps: what would be forgotten and what the prune after it would free, which is what the real
  run then frees;
* ``--json`` holds both results; when nothing is forgotten, prune does not run (``pruned`` null);
* ``--repack-threshold`` and ``--wait`` reach the prune; named snapshots work with ``--prune``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pytest

import stcore
from stcore.errors import ConfigError
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.helpers import listing

FILE = 200_000  # below the chunker's minimum: one file is one blob


@pytest.fixture
def four_snapshots(tmp_path: Path) -> tuple[Path, list[str], Path]:
    """A repository of four snapshots, each adding files of its own to a file they all share;
    the source folder, as the last snapshot saw it, is returned too."""
    repo = stcore.init_repository(str(tmp_path / "repo"), pack_size=1 << 20)
    rng = random.Random(5)
    root = tmp_path / "data"
    root.mkdir()
    (root / "shared.bin").write_bytes(rng.randbytes(FILE))
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    ids = []
    for i in range(4):
        for old in root.glob("own-*"):
            old.unlink()
        for j in range(3):
            (root / f"own-{i}-{j}.bin").write_bytes(rng.randbytes(FILE))
        sources = stcore.sources_for_paths([str(root)])
        ids.append(repo.backup(sources, time=start + dt.timedelta(days=i)).manifest.id)
    repo.close()
    return tmp_path / "repo", ids, root


def contents(repo_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder of the repository but its locks (a dry-run prune takes one)."""
    return {name: stat for name, stat in listing(repo_dir).items() if name != "locks"}


def stored_bytes(repo_dir: Path) -> int:
    return sum(p.stat().st_size for p in (repo_dir / "data").rglob("*") if p.is_file())


def forget(repo_dir: Path, *args: str) -> dict:
    result = run_cli("--repo", str(repo_dir), "forget", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_forget_prune_reclaims_the_space_and_check_passes_after(
    four_snapshots: tuple[Path, list[str], Path], tmp_path: Path
) -> None:
    repo_dir, ids, root = four_snapshots
    before = stored_bytes(repo_dir)
    document = forget(repo_dir, "--keep-last", "1", "--prune")
    assert document["dry_run"] is False
    assert sorted(document["removed"]) == sorted(ids[:3])
    pruned = document["pruned"]
    assert pruned["snapshots"] == 1 and pruned["packs_deleted"] >= 1
    after = stored_bytes(repo_dir)
    assert pruned["bytes_before"] == before and pruned["bytes_after"] == after
    # Three snapshots' own files (nine of them) are gone; the kept one's four files stay.
    assert after < before - 8 * FILE and after > 4 * FILE
    checked = run_cli("--repo", str(repo_dir), "check", "--read-data")
    assert checked.returncode == 0 and "no errors found" in checked.stdout, checked.stderr
    with stcore.open_repository(str(repo_dir)) as repo:
        repo.restore(ids[3], tmp_path / "out")
    (name,) = [p.name for p in (tmp_path / "out").iterdir()]
    for path in root.iterdir():
        assert (tmp_path / "out" / name / path.name).read_bytes() == path.read_bytes()


def test_dry_run_changes_nothing_and_predicts_what_the_real_run_frees(
    four_snapshots: tuple[Path, list[str], Path],
) -> None:
    repo_dir, ids, _ = four_snapshots
    files = contents(repo_dir)
    dry = forget(repo_dir, "--keep-last", "2", "--prune", "--dry-run")
    assert contents(repo_dir) == files  # not one file added, changed or removed
    assert dry["dry_run"] is True and dry["removed"] == []
    assert sorted(d["id"] for d in dry["decisions"] if not d["keep"]) == sorted(ids[:2])
    predicted = dry["pruned"]
    # The prune is planned as if the two were forgotten: it would keep two, and free space.
    assert predicted["snapshots"] == 2 and predicted["bytes_freed"] > 0
    text = run_cli("--repo", str(repo_dir), "forget", "--keep-last", "2", "--prune", "-n")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[-3] == "would forget 2 snapshots" and lines[-2].startswith("would free ")
    assert lines[-1].startswith("2 snapshots kept (") and lines[-1].endswith(" stored)")
    assert all(len(line) <= 80 for line in lines)
    assert contents(repo_dir) == files
    # Exactly what a prune's own dry run says once the two are really forgotten ...
    assert forget(repo_dir, "--keep-last", "2")["pruned"] is None
    plain = run_cli("--repo", str(repo_dir), "prune", "--dry-run", "--json")
    assert plain.returncode == 0, plain.stderr
    expected = {
        k: v for k, v in json.loads(plain.stdout).items() if k not in ("seconds", "dry_run")
    }
    assert {k: v for k, v in predicted.items() if k != "seconds"} == expected
    # ... and what the prune then frees (less the few bytes of the repacked pack's trailer).
    real = run_cli("--repo", str(repo_dir), "prune", "--json")
    freed = json.loads(real.stdout)
    assert freed["packs_deleted"] == predicted["packs_deleted"]
    assert 0 <= predicted["bytes_freed"] - freed["bytes_freed"] < 1024


def test_nothing_forgotten_means_no_prune(four_snapshots: tuple[Path, list[str], Path]) -> None:
    repo_dir, _, _ = four_snapshots
    files = listing(repo_dir)
    document = forget(repo_dir, "--keep-last", "10", "--prune")
    assert document["removed"] == [] and document["pruned"] is None
    assert listing(repo_dir) == files  # prune did not even take its lock
    text = run_cli("--repo", str(repo_dir), "forget", "--keep-last", "10", "--prune")
    assert text.stdout.splitlines()[-1] == "forgot 0 snapshots; nothing to prune"


def test_named_snapshots_and_prune_options_pass_through(
    four_snapshots: tuple[Path, list[str], Path],
) -> None:
    repo_dir, ids, _ = four_snapshots
    # A threshold of 0 never repacks: packs with any live blob stay as they are.
    document = forget(repo_dir, ids[0], "--prune", "--repack-threshold", "0", "--wait", "5")
    assert document["removed"] == [ids[0]]
    assert document["pruned"]["packs_repacked"] == 0 and document["pruned"]["packs_written"] == 0
    with stcore.open_repository(str(repo_dir)) as repo:
        assert [m.id for m in repo.snapshots()] == ids[:0:-1]
        assert repo.check(read_data=True).ok


def test_without_prune_the_json_says_no_prune_ran(
    four_snapshots: tuple[Path, list[str], Path],
) -> None:
    repo_dir, ids, _ = four_snapshots
    before = stored_bytes(repo_dir)
    document = forget(repo_dir, "--keep-last", "3")
    assert document["removed"] == [ids[0]] and document["pruned"] is None
    assert stored_bytes(repo_dir) == before


def test_a_prune_ignoring_snapshots_is_a_dry_run_only(repo: Repository) -> None:
    with pytest.raises(ConfigError, match="dry run"):
        repo.prune(ignore_snapshots=["20260101T000000Z-00000000"])
