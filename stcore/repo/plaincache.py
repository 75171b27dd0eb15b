"""Verified plaintext blobs fetched ahead of a reader, kept in memory until it asks for them.

Read-ahead (:mod:`stcore.access.readahead`) fetches, decompresses and verifies the blobs a
caller is about to read on threads of its own, so the caller only parses. The decoded blobs wait
here: a bounded, least-recently-used map from blob id to plaintext that
:meth:`Store.read_blob` and bulk reads consult before anything else. Only blobs that passed
verification are put here, and it lives in this process's memory only (never on disk, so an
encrypted repository's plaintext stays where it always is: in the reading process).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

#: plaintext bytes held at most
DEFAULT_PLAIN_BYTES = 64 * 1024 * 1024


class PlainCache:
    """Blob id -> verified plaintext, at most ``max_bytes`` of it, least recently used out."""

    def __init__(self, max_bytes: int = DEFAULT_PLAIN_BYTES) -> None:
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._blobs)

    def get(self, blob_id: bytes) -> bytes | None:
        if not self._blobs:  # the common case, when nothing reads ahead: no lock taken
            return None
        with self._lock:
            data = self._blobs.get(blob_id)
            if data is not None:
                self._blobs.move_to_end(blob_id)
            return data

    def put(self, blob_id: bytes, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._blobs.pop(blob_id, None)
            if old is not None:
                self._bytes -= len(old)
            self._blobs[blob_id] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, dropped = self._blobs.popitem(last=False)
                self._bytes -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._blobs.clear()
            self._bytes = 0
