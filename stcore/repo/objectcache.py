"""A local, size-bounded cache of what was fetched from a remote repository.

Entries are immutable objects named by their id (blob frames by blob id, index objects by their
hash), so a cache entry is never stale: it is either there and right, or absent. The cache keeps
the *stored* bytes, exactly what the backend holds, and the repository decodes and verifies them
on every read: a damaged cache file is detected like a damaged pack and simply refetched, and an
encrypted repository never leaves plaintext on disk.

Several processes may share one cache: files appear by atomic rename, readers tolerate entries
vanishing under them, and eviction (least recently used first, by mtime, which a hit refreshes)
deletes whole files only. The total size is one counter shared by every process (``.size``,
updated under ``flock``), so the bound holds however many processes write.

Updating that counter takes a file lock and a rewrite, which costs more than writing a small
entry, so a process adds what it wrote in batches: at the end of a bulk read (at most once a
second, :meth:`settle`), when its unrecorded bytes reach :attr:`ObjectCache.flush_bytes` (1/64
of the bound, at most 16 MiB), and when the repository is closed. Each writer can so overshoot the
bound by at most that much, and a process killed before it flushed leaves the counter low by
as much; every eviction recounts the files, which corrects it.

Besides fetched objects the cache holds whole files made from them: a SQLite database
materialised for :meth:`~stcore.access.views.SourceView.connect` is a ``sqlite`` entry
(:meth:`put_file`), and the decoded chunks of an unencrypted repository's files are ``plain``
entries (:mod:`stcore.repo.chunkcache`), counted, evicted and cleared like the rest.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stcore.localfiles import atomic_write, file_lock

DEFAULT_CACHE_BYTES = 1024**3
#: eviction frees down to this share of the bound, so it does not run on every insert
LOW_WATER = 0.9
#: the most bytes a process writes before it records them in the shared counter
FLUSH_BYTES = 16 * 1024**2
#: a bulk read that ends records what it wrote unless the counter was updated this recently
SETTLE_SECONDS = 1.0
#: bytes of entries waiting for the writer thread at most (put_later)
WRITE_BEHIND_BYTES = 64 * 1024**2


class ObjectCache:
    """Files under ``root/<kind>/<xx>/<id>``, at most about ``max_bytes`` in all."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("the cache bound must be positive")
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        #: bytes this process wrote and has not yet added to the shared counter
        self._unrecorded = 0
        self._unrecorded_lock = threading.Lock()
        self.flush_bytes = min(FLUSH_BYTES, max_bytes // 64)
        self._flushed_at = 0.0
        #: entries waiting for the writer thread (put_later), and their bytes
        self._behind = threading.Condition(threading.Lock())
        self._waiting: dict[tuple[str, str], bytes] = {}
        self._waiting_bytes = 0
        self._writer: ThreadPoolExecutor | None = None
        self.failed_writes = 0
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, name: str) -> Path:
        return self.root / kind / name[:2] / name

    def _pending(self, kind: str, name: str) -> bytes | None:
        """An entry's bytes while it waits for the writer thread (a hit), else None."""
        with self._behind:
            waiting = self._waiting.get((kind, name))
        if waiting is not None:
            self.hits += 1
        return waiting

    def get(self, kind: str, name: str) -> bytes | None:
        waiting = self._pending(kind, name)
        if waiting is not None:
            return waiting
        path = self._path(kind, name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        try:
            os.utime(path)  # a hit makes the entry recently used
        except FileNotFoundError:
            pass  # evicted by another process just now; the bytes we read are still good
        self.hits += 1
        return data

    def open_entry(self, kind: str, name: str) -> int | bytes | None:
        """An entry to read parts of: its bytes while it waits to be written, else an open
        file descriptor (the caller closes it), else None. A hit makes it recently used."""
        waiting = self._pending(kind, name)
        if waiting is not None:
            return waiting
        path = self._path(kind, name)
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            self.misses += 1
            return None
        try:
            os.utime(descriptor)
        except OSError:
            pass  # a read-only cache still serves what it holds
        self.hits += 1
        return descriptor

    @contextmanager
    def _shared_total(self) -> Iterator[list[int]]:
        """The cache's total size, read and written under a lock every process respects.

        Without a counter (a new cache, or one deleted) the files are counted, including
        this process's unrecorded ones, which are then recorded already.
        """
        with self._lock, file_lock(self.root / ".lock"):
            counter = self.root / ".size"
            try:
                total = [int(counter.read_text() or 0)]
            except (FileNotFoundError, ValueError):
                total = [self._scan_size()]
                with self._unrecorded_lock:
                    self._unrecorded = 0
            try:
                yield total
            finally:
                try:
                    atomic_write(counter, str(max(0, total[0])))
                except OSError:
                    self.failed_writes += 1
                    counter.unlink(missing_ok=True)  # stale: the next update counts the files

    def put(self, kind: str, name: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        path = self._path(kind, name)
        existed = path.exists()
        # Written outside the lock: a slow disk must not stall every other process.
        try:
            atomic_write(path, data)
        except OSError:
            # The cache is only a cache: a full or read-only disk must not fail the read
            # that fetched these bytes. Counted, shown by stats().
            self.failed_writes += 1
            return
        if not existed:
            self._written(len(data))

    def put_later(self, kind: str, name: str, data: bytes) -> None:
        """:meth:`put` on a writer thread, so a bulk read does not wait for thousands of small
        files to be created (about 0.1 ms each, far more while the disk is busy).

        Until it is written, :meth:`get` answers from memory. At most
        :data:`WRITE_BEHIND_BYTES` wait (a put beyond that waits for room); :meth:`flush`,
        :meth:`clear` and closing the repository wait for all of them. The cache is only a
        cache: a write that fails (a full disk) is counted in :meth:`stats`, never raised to
        the read that fetched the bytes.
        """
        if len(data) > self.max_bytes:
            return
        key = (kind, name)
        with self._behind:
            if key in self._waiting:
                return
            while self._waiting_bytes > WRITE_BEHIND_BYTES:
                self._behind.wait()
            self._waiting[key] = data
            self._waiting_bytes += len(data)
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="stcore-cache-write")
            writer = self._writer
        writer.submit(self._write_behind, kind, name, data)

    def _write_behind(self, kind: str, name: str, data: bytes) -> None:
        try:
            self.put(kind, name, data)
        finally:
            with self._behind:
                self._waiting.pop((kind, name), None)
                self._waiting_bytes -= len(data)
                self._behind.notify_all()

    def drain(self) -> None:
        """Wait until every :meth:`put_later` entry is written."""
        with self._behind:
            while self._waiting:
                self._behind.wait()

    def put_file(self, kind: str, name: str, chunks: Iterable[bytes]) -> Path:
        """Write an entry from ``chunks`` (atomically, ``0600``) unless it is there; its path.

        The entry is counted, and the cache evicts down to its bound at once, however large
        the entry (one larger than the bound stays until the next eviction: its reader needs
        it now). An error from ``chunks`` leaves nothing behind.
        """
        path = self._path(kind, name)
        if path.exists():
            try:
                os.utime(path)
            except FileNotFoundError:
                pass
            else:
                self.hits += 1
                return path
        self.misses += 1
        atomic_write(path, chunks)
        self._unrecorded_add(path.stat().st_size)
        self.flush(keep=path)
        return path

    def _unrecorded_add(self, size: int) -> bool:
        """Count ``size`` bytes written to disk as not yet recorded; whether a record is due.

        Not during a recount (:meth:`_shared_total` without a counter): an entry on disk but
        not yet added here would be missed by both. Waiting means it may be counted twice
        instead, which only evicts a little early, until the next eviction recounts.
        """
        with self._lock, self._unrecorded_lock:
            self._unrecorded += size
            return self._unrecorded >= self.flush_bytes

    def _written(self, size: int) -> None:
        if self._unrecorded_add(size):
            self._record()

    def settle(self) -> None:
        """Record what is written so far, at most once a second (the writer thread is not
        waited for): what a bulk read calls when it ends, so a loop of small reads does not
        rewrite the counter every time."""
        if time.monotonic() - self._flushed_at >= SETTLE_SECONDS:
            self._record()

    def flush(self, keep: Path | None = None) -> None:
        """Write what waits to be written, add the bytes this process wrote to the shared
        counter, and evict if over the bound (never ``keep``, an entry about to be used)."""
        self.drain()
        self._record(keep)

    def _record(self, keep: Path | None = None) -> None:
        with self._unrecorded_lock:
            if not self._unrecorded:
                return
        self._flushed_at = time.monotonic()
        with self._shared_total() as total:
            with self._unrecorded_lock:
                added, self._unrecorded = self._unrecorded, 0
            total[0] += added
            if total[0] > self.max_bytes:
                total[0] = self._evict(keep)

    def discard(self, kind: str, name: str) -> None:
        """Drop one entry (after it failed verification)."""
        self.drain()
        path = self._path(kind, name)
        with self._shared_total() as total:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return
            total[0] -= size

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries: list[tuple[float, int, Path]] = []
        if not self.root.is_dir():
            return entries
        for dirpath, _, filenames in os.walk(self.root):
            for filename in filenames:
                if filename.startswith("."):
                    continue  # another process's file being written, or the size counter
                path = Path(dirpath) / filename
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                entries.append((st.st_mtime, st.st_size, path))
        return entries

    def _scan_size(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict(self, keep: Path | None = None) -> int:
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        target = int(self.max_bytes * LOW_WATER)
        for _, size, path in entries:
            if total <= target:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
        return total

    def stats(self) -> dict[str, Any]:
        self.flush()
        entries = self._entries()
        kinds: dict[str, dict[str, int]] = {}
        for _, size, path in entries:
            name = path.relative_to(self.root).parts[0]
            kind = kinds.setdefault(name, {"entries": 0, "bytes": 0})
            kind["entries"] += 1
            kind["bytes"] += size
        return {
            "path": str(self.root),
            "entries": len(entries),
            "bytes": sum(size for _, size, _ in entries),
            "max_bytes": self.max_bytes,
            "kinds": kinds,
            "hits": self.hits,
            "misses": self.misses,
            "failed_writes": self.failed_writes,
        }

    def clear(self) -> int:
        """Remove every entry; return how many bytes were freed."""
        freed = 0
        self.drain()
        with self._unrecorded_lock:
            self._unrecorded = 0
        with self._shared_total() as total:
            for _, size, path in self._entries():
                path.unlink(missing_ok=True)
                freed += size
            total[0] = 0
        return freed
