"""Retention + prune are safe: forget, prune, repack, crashes, locks, sync --prune, the facade.

* after forget + prune every kept snapshot restores byte-for-byte, ``check --read-data`` passes
  and the repository shrinks by exactly the packs only forgotten snapshots referenced;
* a mostly-dead pack is repacked below the threshold (never with ``--repack-threshold 0``), and
  ``--dry-run`` deletes nothing and predicts what the real run frees;
* a backup and forget + prune racing each other, round after round, stay consistent;
* a prune killed with SIGKILL at any moment leaves a repository that checks, restores and
  prunes cleanly (its stale lock does not get in the way);
* locks: backups wait for prune, prune refuses live holders in one line, stale locks are ignored;
* ``sync --prune`` propagates forgets, plain ``sync`` deletes nothing, ``prune --remote`` works;
* ``cleanup_old_backups(keep_days)`` keeps what lies within N days of the newest backup.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import stcore
from cloud_storage_manager import CloudStorageManager
from stcore.models import default_host
from stcore.repo.locks import repository_lock
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.trees import snapshot_of_tree

MIB = 1 << 20
FILE = 200_000  # below the chunker's minimum: one file is exactly one blob


# --- helpers -------------------------------------------------------------------------------------


def data_sizes(repo: Repository) -> dict[str, int]:
    """Every pack (``data/`` object) and its size."""
    return {info.key: info.size for info in repo.backend.list("data/")}


def keys(repo: Repository, prefix: str = "") -> set[str]:
    return {info.key for info in repo.backend.list(prefix)}


def backup_dir(repo: Repository, root: Path, **kwargs: object) -> str:
    return repo.backup(stcore.sources_for_paths([str(root)]), **kwargs).manifest.id  # type: ignore[arg-type]


def fill(root: Path, files: dict[str, int], rng: random.Random) -> None:
    """Replace ``root``'s content by random files of the given sizes."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name, size in files.items():
        (root / name).write_bytes(rng.randbytes(size))


def assert_restores(repo: Repository, snapshot_id: str, expected: dict, target: Path) -> None:
    """Restore ``snapshot_id`` (one source) and compare bytes and metadata to ``expected``."""
    shutil.rmtree(target, ignore_errors=True)
    repo.restore(snapshot_id, target)
    (name,) = repo.load_manifest(snapshot_id).sources
    assert snapshot_of_tree(target / name) == expected, f"snapshot {snapshot_id} differs"


def assert_check_ok(repo: Repository) -> None:
    result = repo.check(read_data=True)
    assert result.ok, result.errors


def referenced_packs(repo: Repository) -> set[str]:
    """Packs holding at least one blob some snapshot references (per a fresh index)."""
    repo.store.reload_index(cached=False)
    snapshot_ids = [info.key.rsplit("/", 1)[-1] for info in repo.backend.list("snapshots/")]
    used = repo.referenced_blobs(snapshot_ids)
    return {f"data/{e.pack_id.hex()[:2]}/{e.pack_id.hex()}" for e in repo.index.values()
            if e.blob_id in used}  # fmt: skip


def cli_json(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> object:
    result = run_cli(*args, "--json", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write_lock(repo: Repository, **fields: object) -> str:
    document = {
        "host": default_host(),
        "pid": os.getpid(),
        "time": time.time(),
        "exclusive": False,
        "purpose": "backup",
        **fields,
    }
    key = f"locks/{secrets.token_hex(16)}"
    repo.backend.write(key, json.dumps(document).encode())
    return key


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- 1. forget + prune: restores, check, exact space reclaimed -----------------------------------


def test_forget_and_prune_free_exactly_the_forgotten_data_and_keep_the_rest(
    tmp_path: Path,
) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"), pack_size=MIB)
    rng = random.Random(1)
    root = tmp_path / "data"
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    expected: dict[str, dict] = {}
    packs_of: dict[str, set[str]] = {}
    shared = rng.randbytes(FILE)
    for i in range(6):
        # Each snapshot: the shared file (stored once, by the first) and 5 files of its own.
        fill(root, {f"own-{i}-{j}.bin": FILE for j in range(5)}, rng)
        (root / "shared.bin").write_bytes(shared)
        before = keys(repo, "data/")
        snapshot_id = backup_dir(
            repo, root, time=start + dt.timedelta(hours=i), tags=["base"] if i == 0 else []
        )
        packs_of[snapshot_id] = keys(repo, "data/") - before
        expected[snapshot_id] = snapshot_of_tree(root)
    ids = list(expected)  # oldest first
    env = {"STCORE_REPO": str(tmp_path / "repo")}
    decisions = cli_json("forget", "--keep-last", "2", "--keep-tag", "base", env=env)
    forgotten = set(ids[1:4])
    assert set(decisions["removed"]) == forgotten  # type: ignore[index]
    sizes_before = data_sizes(repo)
    dead = set().union(*(packs_of[s] for s in forgotten))
    dead_bytes = sum(sizes_before[k] for k in dead)
    assert dead_bytes >= 3 * 5 * FILE  # their own files, nothing shared with kept snapshots

    summary = cli_json("prune", env=env)
    sizes_after = data_sizes(repo)
    assert set(sizes_after) == set(sizes_before) - dead  # the kept snapshots' packs stay as is
    freed = sum(sizes_before.values()) - sum(sizes_after.values())
    assert freed == dead_bytes == summary["bytes_freed"]  # type: ignore[index]
    assert summary["packs_deleted"] == len(dead) and summary["snapshots"] == 3  # type: ignore[index]
    assert len(keys(repo, "index/")) == 1

    check = run_cli("check", "--read-data", env=env)
    assert check.returncode == 0 and "no errors found" in check.stdout, check.stderr
    reopened = stcore.open_repository(str(tmp_path / "repo"))
    assert sorted(m.id for m in reopened.snapshots()) == sorted(set(ids) - forgotten)
    for snapshot_id in set(ids) - forgotten:
        assert_restores(reopened, snapshot_id, expected[snapshot_id], tmp_path / "out")
    # Nothing left to free.
    assert reopened.prune().bytes_freed == 0


def _mostly_dead_pack(tmp_path: Path, name: str) -> tuple[Repository, str, dict, str]:
    """A pack with one small live blob and ~800 KB dead: returns repo, kept id, tree, pack key."""
    repo = stcore.init_repository(str(tmp_path / name), pack_size=MIB)
    rng = random.Random(2)
    root = tmp_path / f"{name}-data"
    fill(root, {"small.txt": 1000, **{f"big{i}.bin": FILE for i in range(4)}}, rng)
    first = backup_dir(repo, root)
    (pack,) = keys(repo, "data/")
    for i in range(4):
        (root / f"big{i}.bin").unlink()
    kept = backup_dir(repo, root)
    assert repo.forget([first]) == [first]
    return repo, kept, snapshot_of_tree(root), pack


def test_a_mostly_dead_pack_is_repacked_and_dry_run_predicts_the_result(tmp_path: Path) -> None:
    repo, kept, tree, pack = _mostly_dead_pack(tmp_path, "repo")
    objects = {info.key: info.size for info in repo.backend.list()}

    estimate = repo.prune(dry_run=True)
    assert {info.key: info.size for info in repo.backend.list()} == objects  # nothing touched
    assert estimate.packs_repacked == 1 and estimate.bytes_freed > 4 * FILE

    before = keys(repo, "data/")
    result = repo.prune()
    written = keys(repo, "data/") - before
    assert pack not in keys(repo, "data/") and len(written) == 1
    assert result.packs_repacked == 1 and result.packs_written == 1
    assert result.bytes_freed > 4 * FILE
    written_bytes = sum(data_sizes(repo)[k] for k in written)
    assert abs(result.bytes_freed - estimate.bytes_freed) <= written_bytes
    assert_check_ok(repo)
    assert_restores(repo, kept, tree, tmp_path / "out")


def test_repack_threshold_zero_never_repacks(tmp_path: Path) -> None:
    repo, kept, tree, pack = _mostly_dead_pack(tmp_path, "repo")
    env = {"STCORE_REPO": str(tmp_path / "repo")}
    before = data_sizes(repo)
    dry = cli_json("prune", "--repack-threshold", "0", "--dry-run", env=env)
    result = cli_json("prune", "--repack-threshold", "0", env=env)
    assert data_sizes(repo) == before and pack in before
    assert dry["bytes_freed"] == result["bytes_freed"] == 0  # type: ignore[index]
    assert result["packs_repacked"] == 0  # type: ignore[index]
    assert_check_ok(repo)
    assert_restores(repo, kept, tree, tmp_path / "out")


def test_a_pack_kept_by_an_earlier_prune_is_still_repacked_later(tmp_path: Path) -> None:
    repo, kept, tree, pack = _mostly_dead_pack(tmp_path, "repo")
    assert repo.prune(repack_threshold=0).packs_repacked == 0
    result = repo.prune(repack_threshold=0.5)
    assert_check_ok(repo)
    assert_restores(repo, kept, tree, tmp_path / "out")
    assert result.packs_repacked == 1 and pack not in keys(repo, "data/")


# --- 2. a backup and forget + prune at the same moment, several rounds ---------------------------


def test_backup_concurrent_with_forget_and_prune_stays_consistent(tmp_path: Path) -> None:
    repo_path = tmp_path / "repo"
    stcore.init_repository(str(repo_path), pack_size=MIB).close()
    env = {**os.environ, "STCORE_REPO": str(repo_path), "STCORE_LOCK_WAIT": "60"}
    work = tmp_path / "work"
    work.mkdir()
    rng = random.Random(3)
    for j in range(4):
        (work / f"base-{j}.bin").write_bytes(rng.randbytes(FILE))
    cli = [sys.executable, "-m", "stcore.cli"]
    expected: dict[str, dict] = {}
    started = time.monotonic()
    for round_ in range(4):
        (work / f"new-{round_}.bin").write_bytes(rng.randbytes(3 * FILE))
        (work / f"base-{round_ % 4}.bin").write_bytes(rng.randbytes(FILE))  # rewritten
        if round_ >= 2:
            (work / f"new-{round_ - 2}.bin").unlink()  # dead once its snapshots are forgotten
        copy = tmp_path / f"copy-{round_}" / "work"
        shutil.copytree(work, copy)
        tree = snapshot_of_tree(copy)
        assert tree == snapshot_of_tree(work)
        backup = subprocess.Popen(
            [*cli, "backup", "--json", str(work)], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        pruner = subprocess.Popen(
            ["sh", "-c", '"$0" -m stcore.cli forget --keep-last 2 && '
             '"$0" -m stcore.cli prune --wait 60 --repack-threshold 0.6 --json', sys.executable],
            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out_b, err_b = backup.communicate(timeout=60)
        _, err_p = pruner.communicate(timeout=60)
        assert backup.returncode == 0, err_b
        assert pruner.returncode == 0, err_p
        expected[json.loads(out_b)["id"]] = tree
    assert time.monotonic() - started < 30
    repo = stcore.open_repository(str(repo_path))
    remaining = [m.id for m in repo.snapshots()]
    assert 2 <= len(remaining) <= 3 and set(remaining) <= set(expected)
    assert list(expected)[-1] in remaining  # the newest backup is never forgotten
    assert_check_ok(repo)
    for snapshot_id in remaining:
        assert_restores(repo, snapshot_id, expected[snapshot_id], tmp_path / "out")
    assert keys(repo, "locks/") == set()


# --- 3. prune killed with SIGKILL at any moment --------------------------------------------------


def _prepare_crash_template(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    """Many small packs; after forget --keep-last 2, lots to delete and to repack."""
    path = tmp_path / "template"
    repo = stcore.init_repository(str(path), pack_size=16_000)
    rng = random.Random(4)
    root = tmp_path / "crash-data"
    root.mkdir()
    names = [f"f{i:02}.bin" for i in range(64)]
    for name in names:
        (root / name).write_bytes(rng.randbytes(6000))
    ids = []
    trees = {}
    start = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    for s in range(8):
        for name in rng.sample(names, 16):
            (root / name).write_bytes(rng.randbytes(6000))
        ids.append(backup_dir(repo, root, time=start + dt.timedelta(hours=s)))
        trees[ids[-1]] = snapshot_of_tree(root)
    repo.forget(ids[:-2])
    plan = repo.prune(repack_threshold=0.9, dry_run=True)
    assert plan.packs_deleted >= 40 and plan.packs_repacked >= 20, plan
    repo.close()
    return path, {k: trees[k] for k in ids[-2:]}


#: ``stcore`` with every object write and delete of the local backend slowed down by 4 ms, so the
#: polling below can land a SIGKILL inside each step of a prune, not only before or after it.
SLOW_CLI = """
import sys, time
from st_local.backend import LocalBackend
for name in ("write", "delete"):
    def slow(self, *args, _original=getattr(LocalBackend, name)):
        time.sleep(0.004)
        return _original(self, *args)
    setattr(LocalBackend, name, slow)
from stcore.cli import main
sys.argv[0] = "stcore"
main()
"""


def _wait_then_kill(process: subprocess.Popen, path: Path, how: object) -> bool:
    """Kill ``process`` after a delay or once ``how(path)`` holds; True if it was still running."""
    deadline = time.monotonic() + 20
    if isinstance(how, float):
        time.sleep(how)
    else:
        while time.monotonic() < deadline and process.poll() is None and not how(path):  # type: ignore[operator]
            time.sleep(0.0005)
    still_running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    return still_running


def _objects(path: Path, prefix: str) -> set[str]:
    found = set()
    for _dirpath, _, filenames in os.walk(path / prefix):
        found.update(f for f in filenames if not f.startswith(".tmp-"))
    return found


def test_prune_killed_at_any_moment_leaves_a_consistent_repository(tmp_path: Path) -> None:
    template, kept = _prepare_crash_template(tmp_path)
    packs0 = _objects(template, "data")
    indexes0 = _objects(template, "index")
    # (when to kill, whether the prune's object writes and deletes are slowed down)
    triggers: list[tuple[object, bool]] = [
        (0.05, False),  # blind delays: during start-up, the walk, repacking, deleting...
        (0.1, False),
        (0.2, False),
        (0.25, True),
        (0.35, True),
        (lambda p: bool(_objects(p, "data") - packs0), True),  # repacking has written a pack
        (lambda p: len(_objects(p, "data") - packs0) >= 4, True),
        (lambda p: bool(_objects(p, "index") - indexes0), True),  # the new index is written
        (lambda p: bool(indexes0 - _objects(p, "index")), True),  # old indexes being deleted
        (lambda p: len(packs0 - _objects(p, "data")) >= 1, True),  # packs being deleted
        (lambda p: len(packs0 - _objects(p, "data")) >= 20, True),
    ]
    interrupted = left_locks = 0
    for n, (trigger, slow) in enumerate(triggers):
        path = tmp_path / f"crash-{n}"
        shutil.copytree(template, path)
        program = ["-c", SLOW_CLI] if slow else ["-m", "stcore.cli"]
        process = subprocess.Popen(
            [sys.executable, *program, "--repo", str(path), "prune", "--repack-threshold", "0.9"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        interrupted += _wait_then_kill(process, path, trigger)
        left_locks += bool(_objects(path, "locks"))
        repo = stcore.open_repository(str(path))
        assert_check_ok(repo)  # consistent right after the kill
        for snapshot_id, tree in kept.items():
            assert_restores(repo, snapshot_id, tree, tmp_path / "out")
        # The killed prune's lock (same host, dead pid) must not block the next one.
        second = repo.prune(repack_threshold=0.9, wait=0)
        assert second.snapshots == 2
        assert set(data_sizes(repo)) == referenced_packs(repo), f"trigger {n}"
        third = repo.prune(repack_threshold=0.9, wait=0)
        assert third.bytes_freed == 0 and third.packs_deleted == 0 and third.packs_written == 0
        assert_check_ok(repo)
        for snapshot_id, tree in kept.items():
            assert_restores(repo, snapshot_id, tree, tmp_path / "out")
        assert keys(repo, "locks/") == set()
        repo.close()
    assert interrupted >= len(triggers) - 2  # the kills landed while prune was running
    assert left_locks >= 3  # ...and the next prune went ahead despite the dead one's lock


def test_a_killed_prunes_lock_does_not_block_backups_or_prune(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    root = tmp_path / "data"
    fill(root, {"a.bin": 1000}, random.Random(5))
    write_lock(repo, pid=dead_pid(), exclusive=True, purpose="prune")
    env = {"STCORE_REPO": str(tmp_path / "repo"), "STCORE_LOCK_WAIT": "0"}
    result = run_cli("backup", str(root), env=env)
    assert result.returncode == 0, result.stderr
    assert cli_json("prune", "--wait", "0", env=env)["snapshots"] == 1  # type: ignore[index]
    assert keys(repo, "locks/") == set()  # the exclusive locker removed the stale lock


# --- 4. locks ------------------------------------------------------------------------------------


def test_a_backup_waits_for_a_running_prune_then_succeeds(tmp_path: Path) -> None:
    repo, kept, tree, _pack = _mostly_dead_pack(tmp_path, "repo")
    in_prune = threading.Event()
    release = threading.Event()

    def progress(event: str, amount: int) -> None:
        in_prune.set()
        assert release.wait(30)

    results: list[object] = []
    pruner = threading.Thread(
        target=lambda: results.append(repo.prune(progress=progress)), daemon=True
    )
    pruner.start()
    assert in_prune.wait(10)  # prune is repacking, under its exclusive lock
    root = tmp_path / "later"
    fill(root, {"x.bin": FILE}, random.Random(6))
    backup = subprocess.Popen(
        [sys.executable, "-m", "stcore.cli", "--repo", str(tmp_path / "repo"), "backup",
         "--json", str(root)],
        env={**os.environ, "STCORE_LOCK_WAIT": "30"}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1.5)
    assert backup.poll() is None  # waiting for the lock
    assert len(keys(repo, "snapshots/")) == 1
    release.set()
    pruner.join(20)
    out, err = backup.communicate(timeout=30)
    assert backup.returncode == 0, err
    assert results and results[0].packs_repacked == 1  # type: ignore[attr-defined]
    new = json.loads(out)["id"]
    fresh = stcore.open_repository(str(tmp_path / "repo"))
    assert_check_ok(fresh)
    assert_restores(fresh, kept, tree, tmp_path / "out")
    assert_restores(fresh, new, snapshot_of_tree(root), tmp_path / "out")


def test_prune_refuses_a_live_shared_lock_in_one_line(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    write_lock(repo)  # a backup in this (live) process
    result = run_cli("--repo", str(tmp_path / "repo"), "prune", "--wait", "0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "locked" in lines[0]
    assert f"backup (shared) by pid {os.getpid()} on {default_host()}" in lines[0]
    # A lock held by a live process on another host is honoured too (its pid cannot be checked).
    repo.backend.delete(next(iter(keys(repo, "locks/"))))
    write_lock(repo, host="elsewhere.example", pid=dead_pid())
    result = run_cli("--repo", str(tmp_path / "repo"), "prune", "--wait", "0")
    assert result.returncode == 1 and "elsewhere.example" in result.stderr


@pytest.mark.parametrize(
    "stale",
    [
        {"pid": "dead"},
        {"time": time.time() - 7200},
        {"host": "elsewhere.example", "time": time.time() - 7200, "exclusive": True},
    ],
    ids=["dead-pid", "old-timestamp", "old-exclusive-elsewhere"],
)
def test_stale_locks_are_ignored(tmp_path: Path, stale: dict) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    fields = {**stale, "pid": dead_pid()} if stale.get("pid") == "dead" else stale
    write_lock(repo, **fields)
    with repository_lock(repo.backend, exclusive=False, purpose="backup", wait=0):
        pass
    assert repo.prune(wait=0).snapshots == 0
    assert keys(repo, "locks/") == set()


# --- 5. sync --prune, plain sync, prune --remote -------------------------------------------------


def test_sync_prune_propagates_forgets_and_plain_sync_deletes_nothing(tmp_path: Path) -> None:
    (tmp_path / "mirror").mkdir()
    (tmp_path / "stcore.toml").write_text('[repository]\nurl = "repo"\n\n'
                                          '[remotes.mirror]\nurl = "mirror"\n')  # fmt: skip
    repo = stcore.init_repository(str(tmp_path / "repo"), pack_size=MIB)
    rng = random.Random(7)
    root = tmp_path / "data"
    trees = {}
    for i in range(4):
        fill(root, {f"own-{i}-{j}.bin": FILE for j in range(3)}, rng)
        trees[backup_dir(repo, root)] = snapshot_of_tree(root)
    ids = list(trees)  # oldest first
    run = {"cwd": tmp_path}
    assert len(cli_json("sync", **run)[0]["snapshots"]) == 4  # type: ignore[index]
    mirror = stcore.open_repository(str(tmp_path / "mirror"))
    mirror_before = {info.key: info.size for info in mirror.backend.list()}

    cli_json("forget", ids[0], **run)
    cli_json("prune", **run)
    cli_json("sync", **run)  # plain sync: deletes nothing on the remote
    after_plain = {info.key: info.size for info in mirror.backend.list()}
    assert set(after_plain) >= set(mirror_before)
    assert {k for k in after_plain if k.startswith("snapshots/")} == {f"snapshots/{i}" for i in ids}

    cli_json("forget", ids[1], **run)
    summary = cli_json("sync", "--prune", **run)
    assert summary[0]["objects_uploaded"] == 0  # type: ignore[index]
    assert keys(mirror, "snapshots/") == {f"snapshots/{i}" for i in ids[2:]}
    freed = sum(mirror_before[k] for k in mirror_before if k.startswith("data/")) - sum(
        data_sizes(mirror).values()
    )
    assert freed >= 2 * 3 * FILE
    mirror = stcore.open_repository(str(tmp_path / "mirror"))
    assert_check_ok(mirror)
    for snapshot_id in ids[2:]:
        assert_restores(mirror, snapshot_id, trees[snapshot_id], tmp_path / "out")

    # prune --remote: forget one more on the mirror itself, then prune it from here.
    cli_json("--repo", str(tmp_path / "mirror"), "forget", ids[2], **run)
    result = cli_json("prune", "--remote", "mirror", **run)
    assert result["snapshots"] == 1 and result["bytes_freed"] >= 3 * FILE  # type: ignore[index]
    mirror = stcore.open_repository(str(tmp_path / "mirror"))
    assert_check_ok(mirror)
    assert_restores(mirror, ids[3], trees[ids[3]], tmp_path / "out")
    assert set(data_sizes(mirror)) == referenced_packs(mirror)
    # The local repository still has both of its snapshots.
    local = stcore.open_repository(str(tmp_path / "repo"))
    assert {m.id for m in local.snapshots()} == set(ids[2:])
    assert_check_ok(local)


# --- 6. the facade -------------------------------------------------------------------------------


def test_facade_cleanup_keeps_within_n_days_of_the_newest_and_frees_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "stcore.toml").write_text(
        '[repository]\nurl = "backups"\n\n[sources.docs]\ntype = "files"\npath = "docs"\n'
    )
    monkeypatch.chdir(app)
    storage = CloudStorageManager()
    storage.init_repository()  # the facade never creates one itself
    repo = storage.repository
    rng = random.Random(8)
    newest = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)  # measured from it, not from now
    ages = [20, 10, 6, 3, 0]
    trees = {}
    for age in ages:
        fill(app / "docs", {f"day-{age}.bin": FILE}, rng)
        source = stcore.make_source("docs", "files", {"path": str(app / "docs")})
        manifest = repo.backup([source], time=newest - dt.timedelta(days=age)).manifest
        trees[manifest.id] = (age, snapshot_of_tree(app / "docs"))
    size_before = sum(data_sizes(repo).values())
    result = storage.cleanup_old_backups(keep_days=7)
    assert result["success"] is True
    assert result["removed"] == 2 and result["kept"] == 3
    assert result["bytes_freed"] >= 2 * FILE
    assert size_before - sum(data_sizes(repo).values()) == result["bytes_freed"]
    remaining = {b["backup_id"] for b in storage.list_backups(limit=None)}
    assert remaining == {i for i, (age, _) in trees.items() if age <= 7}
    assert_check_ok(repo)
    for snapshot_id in remaining:
        assert_restores(repo, snapshot_id, trees[snapshot_id][1], tmp_path / "out")
    again = storage.cleanup_old_backups(keep_days=7)
    assert again["removed"] == 0 and again["bytes_freed"] == 0
    storage.close()


def test_prune_removes_what_a_crashed_backup_left_behind(repo: Repository, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_bytes(os.urandom(100_000))
    repo.backup(stcore.sources_for_paths([str(source)]))
    # A backup killed mid-pack leaves its temporary pack file in the repository's root.
    leftover = Path(repo.location) / ".tmp-0123456789abcdef"
    leftover.write_bytes(os.urandom(50_000))
    hours_ago = time.time() - 2 * 3600
    os.utime(leftover, (hours_ago, hours_ago))
    result = repo.prune()
    assert result.abandoned_removed == 1
    assert not leftover.exists()
    assert repo.check(read_data=True).ok


def test_repacking_many_small_blobs_reads_each_pack_once(tmp_path: Path) -> None:
    from tests.test_reader import count_reads, data_reads, small_blob_repository

    source = tmp_path / "src"
    repo = small_blob_repository(tmp_path / "repo", source, files=60)
    for path in sorted(source.iterdir())[::2]:  # half the files change: their old blobs die
        path.write_bytes(os.urandom(9_000))
    latest = repo.backup(stcore.sources_for_paths([str(source)])).manifest.id
    repo.forget([m.id for m in repo.snapshots() if m.id != latest])
    packs = len(list(repo.backend.list("data/")))
    reads = count_reads(repo)
    result = repo.prune(repack_threshold=1.0)
    assert result.packs_repacked > 1
    data_keys = [key for key, offset, length in data_reads(reads) if length is not None]
    # trees are read one by one while walking; repacked data costs at most a read per pack
    trees = sum(1 for e in repo.index.values() if e.blob_type == "tree")
    assert len(data_keys) <= packs + trees + 5
    assert repo.check(read_data=True).ok
    repo.restore("latest", tmp_path / "out")
    for path in source.iterdir():
        assert (tmp_path / "out" / "src" / path.name).read_bytes() == path.read_bytes()
