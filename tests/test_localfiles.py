"""The one file-lock helper and the one atomic-write helper."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import pytest

from stcore.localfiles import FileLock, atomic_write, file_lock, is_locked


def test_a_second_holder_is_refused_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with file_lock(path) as first:
        assert first and is_locked(path)
        with file_lock(path, wait=0) as second:
            assert not second
    assert not is_locked(path)


def test_waiting_by_time_gives_up_and_by_callable_stops_when_told(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    calls = 0

    def keep_waiting() -> bool:
        nonlocal calls
        calls += 1
        return calls < 3

    with file_lock(path):
        assert not FileLock(path).acquire(0.1)
        assert not FileLock(path).acquire(keep_waiting)
    assert calls == 3


def test_a_waiting_locker_gets_the_lock_once_it_is_released(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = FileLock(path)
    holder.acquire()
    timer = threading.Timer(0.2, holder.release)
    timer.start()
    with file_lock(path, wait=5) as got:
        assert got
    timer.join()


def test_shared_locks_coexist_and_exclude_an_exclusive_one(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with file_lock(path, shared=True), file_lock(path, shared=True, wait=0) as second:
        assert second
        with file_lock(path, wait=0) as exclusive:
            assert not exclusive


def _hold_and_die(path: str) -> None:
    FileLock(Path(path)).acquire()
    os._exit(0)  # no release: the kernel drops the lock with the process


def test_a_lock_dies_with_its_process(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    child = multiprocessing.get_context("fork").Process(target=_hold_and_die, args=(str(path),))
    child.start()
    child.join()
    with file_lock(path, wait=0) as got:
        assert got


def test_atomic_write_replaces_whole_and_streams_chunks(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    atomic_write(target, "first")
    atomic_write(target, iter([b"sec", b"ond"]))
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, b"old")

    def chunks() -> object:
        yield b"half"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, chunks())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
