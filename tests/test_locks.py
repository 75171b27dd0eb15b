"""Repository locks: backups share, prune excludes, and stale locks never block."""

from __future__ import annotations

import json
import threading
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


@pytest.mark.parametrize("when", [float("nan"), float("inf"), float("-inf")])
def test_a_lock_whose_time_is_not_a_number_is_damaged_not_live_forever(
    repo: Repository, when: float
) -> None:
    """NaN makes every age comparison false: it must not pass for a live lock."""
    document = {"host": "other", "pid": 5, "time": when, "exclusive": True, "purpose": "x"}
    repo.backend.write("locks/0badc0de", json.dumps(document).encode())  # NaN/Infinity: JSON5-ish
    assert locks.read_lock(repo.backend, "locks/0badc0de") is None
    with repository_lock(repo.backend, exclusive=True, purpose="prune", wait=0):
        pass


def test_a_failed_refresh_is_retried_and_the_lock_stays_fresh(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh that fails (a full disk) must not end refreshing: a lock left to go stale lets
    a prune delete what a running backup writes."""
    monkeypatch.setattr(locks, "REFRESH", 0.05)
    monkeypatch.setattr(locks, "REFRESH_RETRY", 0.05)
    backend = repo.backend
    original = backend.write
    failures = {"left": 3}

    def flaky_write(key: str, data: bytes) -> None:
        if (
            key.startswith("locks/")
            and failures["left"]
            and threading.current_thread().name != ("MainThread")
        ):
            failures["left"] -= 1
            raise OSError(28, "No space left on device")
        original(key, data)

    monkeypatch.setattr(backend, "write", flaky_write)
    with repository_lock(backend, exclusive=False, purpose="backup", wait=0) as held:
        first = _lock_keys(repo)
        deadline = time.monotonic() + 10
        while failures["left"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert failures["left"] == 0
        # after the failures, refreshes succeed again: a new lock object replaces the old one
        # (a listing may fall between a refresh's write and its delete: look again)
        later = _lock_keys(repo)
        while not (len(later) == 1 and later != first) and time.monotonic() < deadline:
            time.sleep(0.02)
            later = _lock_keys(repo)
        assert len(later) == 1 and later != first
        assert held is not None
    assert _lock_keys(repo) == []
