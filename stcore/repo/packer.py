"""Packing blobs into pack files and writing them while the backup keeps reading.

New blobs are gathered into batches of about 256 KiB (one large chunk, or a few dozen database
pages), and each batch is compressed and sealed by a thread pool (zstd and BLAKE3 release the GIL);
batching keeps the per-blob cost of a thread hand-off off the many small blobs of paged files.
Sealed blobs are copied into a pack buffer; a full pack is handed to a second, small pool that
writes it while the next one fills. Pack buffers are ``bytearray`` objects reused from pack to
pack (one filling, one or more writing) and written through a ``memoryview``, so a 16 MiB
pack is neither joined into a fresh copy nor re-allocated per pack. Sealing is bounded in bytes
too, so memory stays at a few packs' worth whatever the size of the data set.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from stcore.errors import ObjectExistsError
from stcore.interfaces import Backend
from stcore.models import BlobType, IndexEntry
from stcore.repo.format import Codec, PackedBlob, encode_pack_trailer, hash_id, object_key
from stcore.repo.memory import release_free_memory

#: raw bytes gathered before a batch goes to a sealing thread
BATCH_BYTES = 256 * 1024
#: raw bytes in sealing at once, per worker thread
INFLIGHT_PER_WORKER = 2 * 1024 * 1024

#: packs being written at once by default; one more fills meanwhile. One is enough for a local
#: disk (a 16 MiB write and fsync takes less time than filling the next pack) and each extra one
#: costs a pack's worth of memory; backends with network latency ask for more.
WRITES_IN_FLIGHT = 1

_Batch = list[tuple[bytes, BlobType, int]]


class _PackBuffer:
    """A growable byte buffer whose storage is kept between packs."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.length = 0

    def append(self, chunk: bytes) -> None:
        end = self.length + len(chunk)
        if end <= len(self.data):
            self.data[self.length : end] = chunk  # same length: a copy, never a resize
        else:
            del self.data[self.length :]
            self.data += chunk
        self.length = end

    def reset(self) -> None:
        self.length = 0


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
        writes_in_flight: int = WRITES_IN_FLIGHT,
        on_pack_written: Callable[[int], None] | None = None,
    ) -> None:
        self._backend = backend
        self._codec = codec
        self._pack_size = pack_size
        self._seal_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="st-seal")
        self._write_pool = ThreadPoolExecutor(
            max_workers=writes_in_flight, thread_name_prefix="st-write"
        )
        self._pending: list[tuple[bytes, BlobType, bytes]] = []
        self._pending_bytes = 0
        self._sealing: collections.deque[tuple[_Batch, int, Future[list[bytes]]]] = (
            collections.deque()
        )
        self._inflight = 0
        self._max_inflight = workers * INFLIGHT_PER_WORKER
        self._writes: collections.deque[Future[None]] = collections.deque()
        # Free pack buffers; taking one blocks while every buffer is being written (backpressure).
        self._free: queue.SimpleQueue[_PackBuffer] = queue.SimpleQueue()
        for _ in range(writes_in_flight + 1):
            self._free.put(_PackBuffer())
        self._pack: _PackBuffer | None = None
        self._blobs: list[PackedBlob] = []
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
        self._pending.append((blob_id, blob_type, data))
        self._pending_bytes += len(data)
        if self._pending_bytes >= BATCH_BYTES:
            self._submit()

    def _submit(self) -> None:
        if not self._pending:
            return
        pending, size = self._pending, self._pending_bytes
        self._pending, self._pending_bytes = [], 0
        future = self._seal_pool.submit(self._seal_batch, [(b, d) for b, _, d in pending])
        self._sealing.append(([(b, t, len(d)) for b, t, d in pending], size, future))
        self._inflight += size
        while self._inflight > self._max_inflight:
            self._collect_one()

    def _seal_batch(self, batch: list[tuple[bytes, bytes]]) -> list[bytes]:
        seal = self._codec.seal_blob
        return [seal(blob_id, data) for blob_id, data in batch]

    def _collect_one(self) -> None:
        blobs, size, future = self._sealing.popleft()
        sealed_blobs = future.result()
        self._inflight -= size
        for (blob_id, blob_type, raw_length), sealed in zip(blobs, sealed_blobs, strict=True):
            pack = self._pack
            if pack is None:
                pack = self._pack = self._take_buffer()
            self._blobs.append(
                PackedBlob(
                    blob_id=blob_id,
                    blob_type=blob_type,
                    offset=pack.length,
                    stored_length=len(sealed),
                    raw_length=raw_length,
                )
            )
            pack.append(sealed)
            if pack.length >= self._pack_size:
                self._flush_pack()

    def _take_buffer(self) -> _PackBuffer:
        while True:
            try:
                return self._free.get_nowait()
            except queue.Empty:
                # Every buffer is being written: wait for the oldest write (and see its error).
                self._writes.popleft().result()

    def _flush_pack(self) -> None:
        pack, blobs = self._pack, self._blobs
        if pack is None or not blobs:
            return
        self._pack, self._blobs = None, []
        pack.append(encode_pack_trailer(self._codec, blobs))
        self._writes.append(self._write_pool.submit(self._write_pack, pack, blobs))
        while self._writes and self._writes[0].done():
            self._writes.popleft().result()

    def _write_pack(self, pack: _PackBuffer, blobs: list[PackedBlob]) -> None:
        try:
            with memoryview(pack.data) as whole, whole[: pack.length] as body:
                pack_id = hash_id(body)
                try:
                    self._backend.write(object_key("data", pack_id), body)
                except ObjectExistsError:
                    pass  # identical bytes -> identical id: another writer stored this exact pack
            size = pack.length
        finally:
            pack.reset()
            self._free.put(pack)
        release_free_memory()
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
            self.stored_bytes += size
        if self._on_pack_written is not None:
            self._on_pack_written(size)

    def finish(self) -> list[IndexEntry]:
        """Seal what is queued, write the last pack, wait for every write; return the entries."""
        try:
            self._submit()
            while self._sealing:
                self._collect_one()
            self._flush_pack()
            while self._writes:
                self._writes.popleft().result()
        finally:
            self.close()
        return self._entries

    def close(self) -> None:
        for _, _, future in self._sealing:
            future.cancel()
        self._seal_pool.shutdown(wait=True, cancel_futures=True)
        self._write_pool.shutdown(wait=True, cancel_futures=True)
