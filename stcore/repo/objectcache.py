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
entry, so a process adds what it wrote in batches: at the end of each bulk read
(:meth:`flush`), when its unrecorded bytes reach :attr:`ObjectCache.flush_bytes` (1/64 of the
bound, at most 16 MiB), and when the repository is closed. Each writer can so overshoot the
bound by at most that much, and a process killed before it flushed leaves the counter low by
as much; every eviction recounts the files, which corrects it.

Besides fetched objects the cache holds whole files made from them: a SQLite database
materialised for :meth:`~stcore.access.views.SourceView.connect` is a ``sqlite`` entry
(:meth:`put_file`), counted, evicted and cleared like the rest.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stcore.localfiles import atomic_write, file_lock

DEFAULT_CACHE_BYTES = 1024**3
#: eviction frees down to this share of the bound, so it does not run on every insert
LOW_WATER = 0.9
#: the most bytes a process writes before it records them in the shared counter
FLUSH_BYTES = 16 * 1024**2


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
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, name: str) -> Path:
        return self.root / kind / name[:2] / name

    def path(self, kind: str, name: str) -> Path:
        """Where entry ``name`` of ``kind`` is (or would be) stored."""
        return self._path(kind, name)

    def get(self, kind: str, name: str) -> bytes | None:
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
                atomic_write(counter, str(max(0, total[0])))

    def put(self, kind: str, name: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        path = self._path(kind, name)
        existed = path.exists()
        # Written outside the lock: a slow disk must not stall every other process.
        atomic_write(path, data)
        if not existed:
            self._written(len(data))

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
        with self._unrecorded_lock:
            self._unrecorded += path.stat().st_size
        self.flush(keep=path)
        return path

    def _written(self, size: int) -> None:
        with self._unrecorded_lock:
            self._unrecorded += size
            due = self._unrecorded >= self.flush_bytes
        if due:
            self.flush()

    def flush(self, keep: Path | None = None) -> None:
        """Add the bytes this process wrote to the shared counter; evict if over the bound
        (never ``keep``, an entry about to be used)."""
        with self._unrecorded_lock:
            if not self._unrecorded:
                return
        with self._shared_total() as total:
            with self._unrecorded_lock:
                added, self._unrecorded = self._unrecorded, 0
            total[0] += added
            if total[0] > self.max_bytes:
                total[0] = self._evict(keep)

    def discard(self, kind: str, name: str) -> None:
        """Drop one entry (after it failed verification)."""
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
        }

    def clear(self) -> int:
        """Remove every entry; return how many bytes were freed."""
        freed = 0
        with self._unrecorded_lock:
            self._unrecorded = 0
        with self._shared_total() as total:
            for _, size, path in self._entries():
                path.unlink(missing_ok=True)
                freed += size
            total[0] = 0
        return freed
