"""Files on this machine that several processes share: an flock helper and atomic writes.

Why by hand: the few locking libraries on PyPI either poll with sleeps only (no blocking or
shared mode) or lock by creating files (which a crashed process leaves behind); ``flock`` locks
belong to an open file, vanish with the process that held them, and two holders in one process
exclude each other too. Both helpers are a few lines over the standard library.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

#: ``wait`` for :class:`FileLock`: None blocks until free, a number polls for that many
#: seconds (0: one try), a callable polls while it returns True
Wait = float | Callable[[], bool] | None

POLL_SECONDS = 0.05


class FileLock:
    """An ``flock`` on ``path`` (created if missing), exclusive unless ``shared``."""

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        self.path = path
        self.shared = shared
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self, wait: Wait = None) -> bool:
        """Take the lock; False if ``wait`` ran out first. See :data:`Wait`."""
        if self._handle is not None:
            raise RuntimeError(f"{self.path} is already locked by this FileLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - kept open while the lock is held
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            if wait is None:
                fcntl.flock(handle, mode)
            else:
                deadline = time.monotonic() + wait if not callable(wait) else None
                while True:
                    try:
                        fcntl.flock(handle, mode | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if callable(wait):
                            if not wait():
                                handle.close()
                                return False
                        elif deadline is None or time.monotonic() >= deadline:
                            handle.close()
                            return False
                        time.sleep(POLL_SECONDS)
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        return True

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_UN)
            finally:
                handle.close()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def file_lock(path: Path, *, shared: bool = False, wait: Wait = None) -> Iterator[bool]:
    """Hold a :class:`FileLock` for the ``with`` block; yields whether it was had at all."""
    lock = FileLock(path, shared=shared)
    acquired = lock.acquire(wait)
    try:
        yield acquired
    finally:
        lock.release()


def is_locked(path: Path) -> bool:
    """Whether some open file holds an exclusive lock on ``path`` (probing, not taking it)."""
    if not path.exists():
        return False
    lock = FileLock(path, shared=True)
    if not lock.acquire(0):
        return True
    lock.release()
    return False


def atomic_write(path: Path, data: bytes | str | Iterable[bytes]) -> None:
    """Write ``path`` whole or not at all: into a unique temporary beside it, then renamed.

    Readers in other processes see the old file or the new one, never part of one; a temporary
    left by a failure is removed. ``data`` may be an iterable of chunks, so large files stream.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as handle:
            if isinstance(data, str):
                handle.write(data.encode())
            elif isinstance(data, bytes | bytearray | memoryview):
                handle.write(data)
            else:
                for chunk in data:
                    handle.write(chunk)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
