"""Packing blobs into pack files and writing them while the backup keeps reading.

New blobs are gathered into batches of about 1 MiB (one large chunk, or a few hundred database
pages), and each batch is compressed and sealed by a thread pool (zstd and BLAKE3 release the GIL);
batching keeps the per-blob cost of a thread hand-off off the many small blobs of paged files.
Sealing is bounded in bytes (4 MiB per worker in flight).

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
from stcore.models import BLOB_TYPE_CODES, BlobType
from stcore.repo.format import Codec, PackedBlob, encode_pack_trailer, object_key
from stcore.repo.idtable import IdTable
from stcore.repo.index import BlobIndex
from stcore.repo.memory import release_free_memory

#: raw bytes gathered before a batch goes to a sealing thread (one or a few large chunks, or
#: a few hundred database pages)
BATCH_BYTES = 1024 * 1024
#: raw bytes in sealing at once, per worker thread
INFLIGHT_PER_WORKER = 4 * 1024 * 1024
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

    The sealing threads also append their sealed blobs to the pack being filled (under a lock),
    so the calling thread only chunks, hashes and hands over. Blobs therefore land in a pack in
    the order their batches finish sealing, not the order they were added; nothing depends on
    that order, as every blob is found through the index.
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
        # whether the pending batch is a paged file's page runs (a batch is one or the other)
        self._pending_paged = False
        # raw bytes handed to sealing and not yet in a pack; bounded, so memory is too
        self._flow = threading.Condition()
        self._inflight = 0
        self._max_inflight = workers * INFLIGHT_PER_WORKER
        self._error: BaseException | None = None
        self._tasks: collections.deque[Future[None]] = collections.deque()
        self._writes: collections.deque[tuple[Future[None], ObjectWriter]] = collections.deque()
        self._writes_lock = threading.Lock()
        self._max_writes = writes_in_flight
        self._free_buffers: list[bytearray] = []
        self._open_writer: Callable[[], ObjectWriter] = (
            backend.open_writer
            if isinstance(backend, StreamingBackend)
            else lambda: _MemoryWriter(backend, self._free_buffers)
        )
        # the pack being filled: its writer, running hash, length and blobs (under _pack_lock)
        self._pack_lock = threading.Lock()
        self._pack: ObjectWriter | None = None
        self._hash = blake3.blake3()
        self._length = 0
        self._blobs: list[PackedBlob] = []
        # the ids added, and where each stored one went: compact tables, not a set and an
        # IndexEntry per blob (15 MiB over a first backup of 78,000 files)
        self._added = IdTable()
        self._entries = BlobIndex()
        self._lock = threading.Lock()
        self._on_pack_written = on_pack_written
        self.stored_bytes = 0

    def is_known(self, blob_id: bytes) -> bool:
        return self._added.find(blob_id) >= 0

    def add(self, blob_id: bytes, blob_type: BlobType, data: bytes, paged: bool = False) -> None:
        """Queue a new blob, unless it was added already; returns quickly unless the bounded
        queues are full. ``paged``: it is a run of a paged file's pages (compressed as such)."""
        if self._added.insert(blob_id) < 0:
            return
        if paged != self._pending_paged:
            self._submit()
            self._pending_paged = paged
        self._pending.append((blob_id, blob_type, data))
        self._pending_bytes += len(data)
        if self._pending_bytes >= BATCH_BYTES:
            self._submit()

    def _submit(self) -> None:
        if not self._pending:
            return
        batch, size = self._pending, self._pending_bytes
        self._pending, self._pending_bytes = [], 0
        with self._flow:
            while self._inflight and self._inflight + size > self._max_inflight:
                if self._error is not None:
                    break
                self._flow.wait()
            if self._error is not None:
                raise self._error
            self._inflight += size
        self._tasks.append(
            self._seal_pool.submit(self._seal_and_pack, batch, size, self._pending_paged)
        )
        while self._tasks and self._tasks[0].done():
            self._tasks.popleft().result()

    def _seal_and_pack(
        self, batch: list[tuple[bytes, BlobType, bytes]], size: int, paged: bool
    ) -> None:
        """On a sealing thread: seal a batch, append it to the pack, start writing full packs."""
        try:
            blobs = [(blob_id, data) for blob_id, _, data in batch]
            sealed = self._codec.seal_blobs(blobs, paged=paged)
            full: list[tuple[ObjectWriter, bytes, list[PackedBlob], int]] = []
            with self._pack_lock:
                parts: list[bytes] = []  # written in one call: a system call per blob is slow
                end = self._length  # where the next blob starts, parts included
                for (blob_id, blob_type, data), stored in zip(batch, sealed, strict=True):
                    if self._pack is None:
                        self._open_pack()
                        end = 0
                    self._blobs.append(
                        PackedBlob(
                            blob_id=blob_id,
                            blob_type=blob_type,
                            offset=end,
                            stored_length=len(stored),
                            raw_length=len(data),
                        )
                    )
                    parts.append(stored)
                    end += len(stored)
                    if end >= self._pack_size:
                        self._append(b"".join(parts))
                        parts = []
                        full.append(self._detach_pack())
                if parts:
                    self._append(b"".join(parts))
            for pack in full:
                self._start_commit(*pack)
        except BaseException as exc:
            with self._flow:
                self._error = self._error or exc
            raise
        finally:
            with self._flow:
                self._inflight -= size
                self._flow.notify_all()

    def _open_pack(self) -> None:
        self._pack = self._open_writer()
        self._hash = blake3.blake3()
        self._length = 0

    def _append(self, data: bytes) -> None:
        assert self._pack is not None
        self._pack.write(data)
        self._hash.update(data)
        self._length += len(data)

    def _detach_pack(self) -> tuple[ObjectWriter, bytes, list[PackedBlob], int]:
        """Close the pack being filled (with its trailer) and start a new one; under the lock."""
        assert self._pack is not None
        self._append(encode_pack_trailer(self._codec, self._blobs))
        detached = (self._pack, self._hash.digest(), self._blobs, self._length)
        self._pack, self._blobs = None, []
        return detached

    def _start_commit(
        self, pack: ObjectWriter, pack_id: bytes, blobs: list[PackedBlob], size: int
    ) -> None:
        try:
            future = self._write_pool.submit(self._commit, pack, pack_id, blobs, size)
        except RuntimeError:
            pack.abort()  # shutting down after an error elsewhere
            raise
        with self._writes_lock:
            self._writes.append((future, pack))
        while True:
            with self._writes_lock:
                if not self._writes or (
                    len(self._writes) <= self._max_writes and not self._writes[0][0].done()
                ):
                    return
                oldest = self._writes.popleft()[0]
            oldest.result()

    def _commit(
        self, pack: ObjectWriter, pack_id: bytes, blobs: list[PackedBlob], size: int
    ) -> None:
        try:
            pack.commit(object_key("data", pack_id))
        except ObjectExistsError:
            pass  # identical bytes -> identical id: another writer stored this exact pack
        with self._lock:
            for b in blobs:
                self._entries.add_fields(
                    b.blob_id,
                    BLOB_TYPE_CODES[b.blob_type],
                    pack_id,
                    b.offset,
                    b.stored_length,
                    b.raw_length,
                )
            self.stored_bytes += size
        release_free_memory()
        if self._on_pack_written is not None:
            self._on_pack_written(size)

    def finish(self) -> BlobIndex:
        """Seal what is queued, write the last pack, wait for every write; return where the
        new blobs went (its ``values()`` are their index entries)."""
        try:
            self._submit()
            while self._tasks:
                self._tasks.popleft().result()
            with self._pack_lock:
                last = self._detach_pack() if self._blobs else None
            if last is not None:
                self._start_commit(*last)
            while True:
                with self._writes_lock:
                    if not self._writes:
                        break
                    oldest = self._writes.popleft()[0]
                oldest.result()
        finally:
            self.close()
        return self._entries

    def close(self) -> None:
        """Stop: cancel queued work and drop every pack not stored (no temporary left behind)."""
        with self._flow:
            if self._error is None:
                self._error = RuntimeError("the packer was closed")
            self._flow.notify_all()
        for task in self._tasks:
            task.cancel()
        self._seal_pool.shutdown(wait=True, cancel_futures=True)
        self._write_pool.shutdown(wait=True, cancel_futures=True)
        for write, pack in self._writes:
            if write.cancelled():
                pack.abort()
        self._writes.clear()
        if self._pack is not None:
            self._pack.abort()
            self._pack = None
