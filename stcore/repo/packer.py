"""Packing blobs into pack files and writing them while the backup keeps reading.

New blobs are gathered into batches of about 256 KiB (one large chunk, or a few dozen database
pages), and each batch is compressed and sealed by a thread pool (zstd and BLAKE3 release the GIL);
batching keeps the per-blob cost of a thread hand-off off the many small blobs of paged files.
Sealing is bounded in bytes (2 MiB per worker in flight).

Sealed blobs are appended to the pack being filled, and its hash (the pack's name) is updated as
they go. When the backend can stream (:class:`~stcore.interfaces.StreamingBackend`, as the local
one does), the pack goes straight to a temporary object and never sits in memory; finishing it
(fsync and link, for a local disk) happens on a writer thread while the next pack fills. Other
backends get the pack from a ``bytearray`` reused from pack to pack, written through a
``memoryview``, so no 16 MiB pack is joined or allocated per pack. Either way memory stays at a few
packs' worth at most, whatever the size of the data set.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import blake3

from stcore.errors import ObjectExistsError
from stcore.interfaces import Backend, BytesLike, ObjectWriter, StreamingBackend
from stcore.models import BlobType, IndexEntry
from stcore.repo.format import Codec, PackedBlob, encode_pack_trailer, object_key
from stcore.repo.memory import release_free_memory

#: raw bytes gathered before a batch goes to a sealing thread
BATCH_BYTES = 256 * 1024
#: raw bytes in sealing at once, per worker thread
INFLIGHT_PER_WORKER = 2 * 1024 * 1024
#: packs being finished (written, synced, named) at once by default while the next one fills
WRITES_IN_FLIGHT = 2

_Batch = list[tuple[bytes, BlobType, int]]


class _MemoryWriter:
    """:class:`ObjectWriter` for backends that cannot stream: a reused in-memory buffer."""

    def __init__(self, backend: Backend, free: list[bytearray]) -> None:
        self._backend = backend
        self._free = free
        self._buffer: bytearray | None = free.pop() if free else bytearray()
        self._length = 0

    def write(self, data: BytesLike) -> None:
        assert self._buffer is not None
        end = self._length + len(data)
        if end <= len(self._buffer):
            self._buffer[self._length : end] = data  # same length: a copy, never a resize
        else:
            del self._buffer[self._length :]
            self._buffer += data
        self._length = end

    def commit(self, key: str) -> None:
        assert self._buffer is not None
        try:
            with memoryview(self._buffer) as whole, whole[: self._length] as body:
                self._backend.write(key, body)
        finally:
            self.abort()

    def abort(self) -> None:
        if self._buffer is not None:
            self._free.append(self._buffer)  # list.append is atomic: writer threads return here
            self._buffer = None


class Packer:
    """Accepts new blobs, seals them in parallel, groups them into packs and stores the packs.

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
        self._writes: collections.deque[tuple[Future[None], ObjectWriter]] = collections.deque()
        self._max_writes = writes_in_flight
        self._free_buffers: list[bytearray] = []
        self._open_writer: Callable[[], ObjectWriter] = (
            backend.open_writer
            if isinstance(backend, StreamingBackend)
            else lambda: _MemoryWriter(backend, self._free_buffers)
        )
        # the pack being filled: its writer, running hash, length and blobs
        self._pack: ObjectWriter | None = None
        self._hash = blake3.blake3()
        self._length = 0
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
            if self._pack is None:
                self._pack = self._open_writer()
                self._hash = blake3.blake3()
                self._length = 0
            self._blobs.append(
                PackedBlob(
                    blob_id=blob_id,
                    blob_type=blob_type,
                    offset=self._length,
                    stored_length=len(sealed),
                    raw_length=raw_length,
                )
            )
            self._append(sealed)
            if self._length >= self._pack_size:
                self._flush_pack()

    def _append(self, data: bytes) -> None:
        assert self._pack is not None
        self._pack.write(data)
        self._hash.update(data)
        self._length += len(data)

    def _flush_pack(self) -> None:
        pack, blobs = self._pack, self._blobs
        if pack is None or not blobs:
            return
        self._append(encode_pack_trailer(self._codec, blobs))
        pack_id, size = self._hash.digest(), self._length
        self._pack, self._blobs = None, []
        future = self._write_pool.submit(self._commit, pack, pack_id, blobs, size)
        self._writes.append((future, pack))
        while self._writes and (len(self._writes) > self._max_writes or self._writes[0][0].done()):
            self._writes.popleft()[0].result()

    def _commit(
        self, pack: ObjectWriter, pack_id: bytes, blobs: list[PackedBlob], size: int
    ) -> None:
        try:
            pack.commit(object_key("data", pack_id))
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
            self.stored_bytes += size
        release_free_memory()
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
                self._writes.popleft()[0].result()
        finally:
            self.close()
        return self._entries

    def close(self) -> None:
        """Stop: cancel queued work and drop every pack not stored (no temporary left behind)."""
        for _, _, future in self._sealing:
            future.cancel()
        self._seal_pool.shutdown(wait=True, cancel_futures=True)
        self._write_pool.shutdown(wait=True, cancel_futures=True)
        for write, pack in self._writes:
            if write.cancelled():
                pack.abort()
        self._writes.clear()
        if self._pack is not None:
            self._pack.abort()
            self._pack = None
