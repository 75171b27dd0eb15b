"""forget + ``sync --prune`` against a cloud emulator: the remote follows the local forgets.

The remote ends with exactly the local snapshots, its unreferenced data is gone, it passes
``check --read-data`` and every kept snapshot restores from it byte-for-byte.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import stcore
from integration.conftest import Remote
from stcore.config import RemoteConfig
from stcore.repo.store import open_backend
from stcore.sync import SyncOptions
from tests.trees import snapshot_of_tree

FILE = 200_000


def _data_bytes(repo: stcore.Repository) -> int:
    return sum(info.size for info in repo.backend.list("data/"))


@pytest.mark.parametrize("remote", ["s3"], indirect=True)
def test_forget_then_sync_prune_reclaims_space_on_the_remote(
    tmp_path: Path, remote: Remote
) -> None:
    url, _ = remote
    open_backend(url, stcore.make_plugin_manager(), create=True).close()  # the empty bucket
    local = stcore.init_repository(str(tmp_path / "repo"), pack_size=1 << 20)
    target = RemoteConfig(name="cloud", url=url)
    rng = random.Random(11)
    root = tmp_path / "data"
    trees = {}
    for i in range(4):
        if root.exists():
            for old in root.iterdir():
                old.unlink()
        root.mkdir(exist_ok=True)
        for j in range(3):
            (root / f"own-{i}-{j}.bin").write_bytes(rng.randbytes(FILE))
        manifest = local.backup(stcore.sources_for_paths([str(root)])).manifest
        trees[manifest.id] = snapshot_of_tree(root)
    ids = list(trees)  # oldest first
    assert len(local.sync(target).snapshots) == 4
    mirror = stcore.open_repository(url)
    before = _data_bytes(mirror)
    snapshot_keys = {f"snapshots/{i}" for i in ids}
    assert {info.key for info in mirror.backend.list("snapshots/")} == snapshot_keys

    assert local.forget(ids[:2]) == ids[:2]
    local.sync(target)  # a plain sync deletes nothing on the remote
    assert {info.key for info in mirror.backend.list("snapshots/")} == snapshot_keys
    assert _data_bytes(mirror) == before

    pruned = local.sync(target, options=SyncOptions(prune=True)).pruned
    assert pruned is not None and pruned.bytes_freed >= 2 * 3 * FILE
    assert {info.key for info in mirror.backend.list("snapshots/")} == {
        f"snapshots/{i}" for i in ids[2:]
    }
    assert before - _data_bytes(mirror) == pruned.bytes_freed
    assert not list(mirror.backend.list("locks/"))
    mirror.close()

    fresh = stcore.open_repository(url)
    result = fresh.check(read_data=True)
    assert result.ok, result.errors
    assert result.snapshots == 2
    for snapshot_id in ids[2:]:
        out = tmp_path / f"out-{snapshot_id}"
        fresh.restore(snapshot_id, out)
        assert snapshot_of_tree(out / "data") == trees[snapshot_id]
    assert fresh.prune().bytes_freed == 0  # nothing unreferenced is left
    fresh.close()
    assert os.environ.get("AWS_ENDPOINT_URL")  # the emulator, never a real cloud


def test_prune_on_a_cloud_repository_never_deletes_a_kept_snapshots_data(
    tmp_path: Path, remote: Remote
) -> None:
    """Two backups, forget the first, lose the index object of the second: prune refuses and
    deletes nothing; repair index, then prune, and the kept snapshot restores byte-for-byte."""
    url, _ = remote
    open_backend(url, stcore.make_plugin_manager(), create=True).close()  # the empty bucket
    repo = stcore.init_repository(url, pack_size=1 << 20)
    rng = random.Random(23)
    root = tmp_path / "data"
    root.mkdir()
    for j in range(4):
        (root / f"f{j}.bin").write_bytes(rng.randbytes(FILE))
    first = repo.backup(stcore.sources_for_paths([str(root)])).manifest
    (root / "new.bin").write_bytes(rng.randbytes(FILE))
    kept = repo.backup(stcore.sources_for_paths([str(root)])).manifest
    repo.forget([first.id])
    kept_root = next(iter(kept.sources.values())).root
    (lost,) = [  # the first backup's index: it holds the data both snapshots share
        info.key
        for info in repo.backend.list("index/")
        if not any(e.blob_id == kept_root for e in repo.store.read_index_entries(info.key))
    ]
    repo.backend.delete(lost)
    packs = {info.key: info.size for info in repo.backend.list("data/")}

    with pytest.raises(stcore.errors.PruneRefusedError, match="repair index"):
        repo.prune()
    assert {info.key: info.size for info in repo.backend.list("data/")} == packs

    repo.repair_index()
    repo.prune()
    with stcore.open_repository(url, cache=False) as fresh:
        assert fresh.check(read_data=True).ok
        fresh.restore(kept.id, tmp_path / "out")
    assert snapshot_of_tree(tmp_path / "out" / root.name) == snapshot_of_tree(root)
