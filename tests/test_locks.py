"""Repository locks: backups share, prune excludes, and stale locks never block."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import stcore
from stcore.errors import RepositoryLockedError
from stcore.repo import locks
from stcore.repo.locks import repository_lock
from stcore.repository import Repository


def _lock_keys(repo: Repository) -> list[str]:
    return [info.key for info in repo.backend.list("locks/")]


def test_shared_locks_coexist(repo: Repository) -> None:
    with (
        repository_lock(repo.backend, exclusive=False, purpose="backup", wait=0),
        repository_lock(repo.backend, exclusive=False, purpose="backup", wait=0),
    ):
        assert len(_lock_keys(repo)) == 2
    assert _lock_keys(repo) == []


def test_an_exclusive_lock_excludes_everyone_else(repo: Repository) -> None:
    backend = repo.backend
    with repository_lock(backend, exclusive=True, purpose="prune", wait=0):
        for exclusive in (False, True):
            with (
                pytest.raises(RepositoryLockedError, match=r"locked: prune \(exclusive\)"),
                repository_lock(backend, exclusive=exclusive, purpose="other", wait=0),
            ):
                pass
    assert _lock_keys(repo) == []  # the refused lockers removed their own lock objects


def test_a_backup_holds_a_shared_lock_so_prune_waits(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with repository_lock(repo.backend, exclusive=True, purpose="prune", wait=0):
        repo.lock_wait = 0
        with pytest.raises(RepositoryLockedError):
            repo.backup(stcore.sources_for_paths([str(tmp_path / "f")]))
    assert repo.snapshots() == []


def test_a_lock_of_a_dead_process_is_stale(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = {
        "host": locks.default_host(),
        "pid": 2**22 + 12345,  # above pid_max: no such process
        "time": time.time(),
        "exclusive": True,
        "purpose": "prune",
    }
    repo.backend.write("locks/deadbeef", json.dumps(document).encode())
    with repository_lock(repo.backend, exclusive=False, purpose="backup", wait=0):
        pass


def test_a_lock_not_refreshed_for_too_long_is_stale(repo: Repository) -> None:
    document = {
        "host": "some-other-host",
        "pid": 1,
        "time": time.time() - locks.STALE_AFTER - 1,
        "exclusive": True,
        "purpose": "prune",
    }
    repo.backend.write("locks/cafebabe", json.dumps(document).encode())
    with repository_lock(repo.backend, exclusive=False, purpose="backup", wait=0):
        pass
