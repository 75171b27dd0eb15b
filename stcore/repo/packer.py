"""Packing blobs into pack files and writing them while the backup keeps reading.

Compression and sealing run in a thread pool (zstd and BLAKE3 release the GIL), finished packs are
written by a second, small pool. Both queues are bounded, so memory stays at a few packs' worth
whatever the size of the data set.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from stcore.errors import ObjectExistsError
from stcore.interfaces import Backend
from stcore.models import BlobType, IndexEntry
from stcore.repo.format import Codec, PackedBlob, encode_pack_trailer, hash_id, object_key


class Packer:
    """Accepts new blobs, seals them in parallel, groups them into packs and uploads the packs.

    ``add`` must be called from one thread; results (index entries) are available after
    :meth:`finish`. ``is_known`` lets callers skip blobs already added in this session.
    """

    def __init__(
        self,
        backend: Backend,
        codec: Codec,
        *,
        pack_size: int,
        workers: int,
        on_pack_written: Callable[[int], None] | None = None,
    ) -> None:
        self._backend = backend
        self._codec = codec
        self._pack_size = pack_size
        self._seal_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="st-seal")
        self._write_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="st-write")
        self._sealing: collections.deque[tuple[bytes, BlobType, int, Future[bytes]]] = (
            collections.deque()
        )
        self._max_sealing = workers * 4
        self._writes: collections.deque[Future[None]] = collections.deque()
        self._max_writes = 2
        self._buffer: list[bytes] = []
        self._blobs: list[PackedBlob] = []
        self._buffered = 0
        self._added: set[bytes] = set()
        self._entries: list[IndexEntry] = []
        self._lock = threading.Lock()
        self._on_pack_written = on_pack_written
        self.stored_bytes = 0

    def is_known(self, blob_id: bytes) -> bool:
        return blob_id in self._added

    def add(self, blob_id: bytes, blob_type: BlobType, data: bytes) -> None:
        """Queue a new blob; returns quickly unless the bounded queues are full."""
        self._added.add(blob_id)
        future = self._seal_pool.submit(self._codec.seal_blob, blob_id, data)
        self._sealing.append((blob_id, blob_type, len(data), future))
        while len(self._sealing) > self._max_sealing:
            self._collect_one()

    def _collect_one(self) -> None:
        blob_id, blob_type, raw_length, future = self._sealing.popleft()
        sealed = future.result()
        self._blobs.append(
            PackedBlob(
                blob_id=blob_id,
                blob_type=blob_type,
                offset=self._buffered,
                stored_length=len(sealed),
                raw_length=raw_length,
            )
        )
        self._buffer.append(sealed)
        self._buffered += len(sealed)
        if self._buffered >= self._pack_size:
            self._flush_pack()

    def _flush_pack(self) -> None:
        if not self._blobs:
            return
        body = b"".join([*self._buffer, encode_pack_trailer(self._codec, self._blobs)])
        blobs = self._blobs
        self._buffer, self._blobs, self._buffered = [], [], 0
        self._writes.append(self._write_pool.submit(self._write_pack, body, blobs))
        while len(self._writes) > self._max_writes:
            self._writes.popleft().result()

    def _write_pack(self, body: bytes, blobs: list[PackedBlob]) -> None:
        pack_id = hash_id(body)
        try:
            self._backend.write(object_key("data", pack_id), body)
        except ObjectExistsError:
            pass  # identical bytes -> identical id: another writer stored this exact pack
        entries = [
            IndexEntry(
                blob_id=b.blob_id,
                blob_type=b.blob_type,
                pack_id=pack_id,
                offset=b.offset,
                stored_length=b.stored_length,
                raw_length=b.raw_length,
            )
            for b in blobs
        ]
        with self._lock:
            self._entries.extend(entries)
            self.stored_bytes += len(body)
        if self._on_pack_written is not None:
            self._on_pack_written(len(body))

    def finish(self) -> list[IndexEntry]:
        """Seal what is queued, write the last pack, wait for every write; return the entries."""
        try:
            while self._sealing:
                self._collect_one()
            self._flush_pack()
            while self._writes:
                self._writes.popleft().result()
        finally:
            self.close()
        return self._entries

    def close(self) -> None:
        for _, _, _, future in self._sealing:
            future.cancel()
        self._seal_pool.shutdown(wait=True, cancel_futures=True)
        self._write_pool.shutdown(wait=True, cancel_futures=True)
