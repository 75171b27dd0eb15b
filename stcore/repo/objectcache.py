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
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stcore.localfiles import atomic_write, file_lock

DEFAULT_CACHE_BYTES = 1024**3
#: eviction frees down to this share of the bound, so it does not run on every insert
LOW_WATER = 0.9


class ObjectCache:
    """Files under ``root/<kind>/<xx>/<id>``, at most about ``max_bytes`` in all."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("the cache bound must be positive")
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, name: str) -> Path:
        return self.root / kind / name[:2] / name

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
        """The cache's total size, read and written under a lock every process respects."""
        with self._lock, file_lock(self.root / ".lock"):
            counter = self.root / ".size"
            try:
                total = [int(counter.read_text() or 0)]
            except (FileNotFoundError, ValueError):
                total = [self._scan_size()]
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
        with self._shared_total() as total:
            if not existed:
                total[0] += len(data)
            if total[0] > self.max_bytes:
                total[0] = self._evict()

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

    def _evict(self) -> int:
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        target = int(self.max_bytes * LOW_WATER)
        for _, size, path in entries:
            if total <= target:
                break
            path.unlink(missing_ok=True)
            total -= size
        return total

    def stats(self) -> dict[str, Any]:
        entries = self._entries()
        return {
            "path": str(self.root),
            "entries": len(entries),
            "bytes": sum(size for _, size, _ in entries),
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
        }

    def clear(self) -> int:
        """Remove every entry; return how many bytes were freed."""
        freed = 0
        with self._shared_total() as total:
            for _, size, path in self._entries():
                path.unlink(missing_ok=True)
                freed += size
            total[0] = 0
        return freed
