"""Files on this machine that several processes share: an flock helper and atomic writes.

Why by hand: the few locking libraries on PyPI either poll with sleeps only (no blocking or
shared mode) or lock by creating files (which a crashed process leaves behind); ``flock`` locks
belong to an open file, vanish with the process that held them, and two holders in one process
exclude each other too. Both helpers are a few lines over the standard library.

Everything stcore keeps on this machine (catalog, files cache, object cache, locks, state) is
the user's alone: files are created ``0600`` and folders ``0700``, set explicitly with
``fchmod``/``chmod`` rather than left to the umask, which many systems set to ``022``.
"""

from __future__ import annotations

import errno
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

#: the mode of every file stcore writes on this machine, whatever the umask
PRIVATE_FILE = 0o600
#: the mode of every folder stcore creates on this machine, whatever the umask
PRIVATE_DIR = 0o700


def make_dirs(path: Path, mode: int = PRIVATE_DIR) -> None:
    """Create ``path`` and its missing parents, each with exactly ``mode`` (not the umask's).

    Folders that exist already are left as they are (a parent may be the user's own, shared
    one); :func:`make_private_dir` also narrows a folder that is stcore's.
    """
    missing: list[Path] = []
    current = path
    while not current.is_dir() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode)
        except FileExistsError:
            continue  # made by another process just now (or a file: the next step will say)
        set_mode(directory, mode)


def make_private_dir(path: Path) -> None:
    """:func:`make_dirs`, and narrow ``path`` itself to ``0700`` if an earlier version left it
    wider (only ``path``: its parents may be anybody's)."""
    make_dirs(path)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR:
        set_mode(path, PRIVATE_DIR)


def set_mode(path: Path | int, mode: int) -> None:
    """``chmod`` (``fchmod`` for a descriptor); a file system that keeps no modes (some network
    mounts refuse chmod) is no error: what the create mode allowed stays."""
    try:
        if isinstance(path, int):
            os.fchmod(path, mode)
        else:
            os.chmod(path, mode)
    except (PermissionError, NotImplementedError):
        pass
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EROFS):
            raise


def create_private(path: Path, mode: int = PRIVATE_FILE) -> None:
    """Make sure ``path`` exists (empty if it was not there) with exactly ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)
    try:
        if os.fstat(fd).st_mode & 0o777 != mode:
            set_mode(fd, mode)
    finally:
        os.close(fd)


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
        make_dirs(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
        if os.fstat(fd).st_mode & 0o777 != PRIVATE_FILE:
            set_mode(fd, PRIVATE_FILE)  # new (the umask applied) or left by an earlier version
        handle = os.fdopen(fd, "a+")
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


def atomic_write(
    path: Path, data: bytes | str | Iterable[bytes], *, mode: int = PRIVATE_FILE
) -> None:
    """Write ``path`` whole or not at all: into a unique temporary beside it, then renamed.

    Readers in other processes see the old file or the new one, never part of one; a temporary
    left by a failure is removed. ``data`` may be an iterable of chunks, so large files stream.
    The file gets exactly ``mode`` (default ``0600``), missing folders ``0700``.
    """
    make_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        set_mode(fd, mode)
        with os.fdopen(fd, "wb") as handle:
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
