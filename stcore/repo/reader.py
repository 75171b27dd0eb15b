"""Reading many blobs with few backend requests: group by pack, coalesce neighbours, read once.

Reading blob by blob costs one range request per blob. That is fine for a few 1 MiB chunks, but
a database stored as one blob per 4 KiB page has tens of thousands of blobs, and a restore or a
full read would make as many requests. The bulk reader instead:

1. looks every requested blob up in the index and keeps each one once (duplicates are served
   from the same read);
2. groups the blobs by pack, sorts them by offset and coalesces neighbours into one *range* when
   the gap between them is at most :data:`MAX_GAP` bytes (reading a small gap is cheaper than
   another request) and the range stays within :data:`MAX_RANGE_BYTES`;
3. reads each range once (``Store.read_object_range``), on a small thread pool, holding at
   most :data:`READ_AHEAD_BYTES` of ranges in flight (always at least one), so memory stays at a
   few ranges however many blobs are asked for;
4. unseals each blob from its range and verifies it against its id, naming the pack and the blob
   when it does not match, exactly as :meth:`Store.read_blob` does; :meth:`BlobReader.read_blobs`
   does this on the pool too (zstd and BLAKE3 release the GIL), so ranges decode in parallel.

With an object cache (remote repositories), blobs already in the cache are not fetched; the rest
are coalesced among themselves, fetched, verified and put in the cache as their stored frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Protocol, TypeVar

import attrs

from stcore.errors import CorruptObjectError
from stcore.models import IndexEntry
from stcore.repo.format import object_key

if TYPE_CHECKING:
    from stcore.repo.format import Codec
    from stcore.repo.index import BlobIndex
    from stcore.repo.objectcache import ObjectCache
    from stcore.repo.plaincache import PlainCache


class PackSource(Protocol):
    """What bulk reads use of a repository (a :class:`~stcore.repo.store.Store` is one)."""

    @property
    def index(self) -> BlobIndex: ...
    @property
    def location(self) -> str: ...

    codec: Codec
    object_cache: ObjectCache | None
    plain_cache: PlainCache
    workers: int

    def read_object_range(self, key: str, offset: int, length: int) -> bytes: ...
    def read_blob(self, blob_id: bytes) -> bytes: ...
    def read_blobs(
        self, blob_ids: Iterable[bytes], *, cached: bool = True
    ) -> Iterator[tuple[bytes, bytes]]: ...


MiB = 1024 * 1024
#: neighbouring blobs at most this far apart are read with one request (the gap is read and
#: dropped): 1 MiB costs less than the latency of another request on any cloud backend
MAX_GAP = MiB
#: the longest single read; a default pack's blobs (16 MiB plus at most one 4 MiB chunk) fit in one
MAX_RANGE_BYTES = 32 * MiB
#: the longest single read of a local repository: a disk serves a pack in 4 MiB reads as fast
#: as in one, and each range is held in memory whole (a restore held two 16 MiB packs)
LOCAL_RANGE_BYTES = 4 * MiB
#: stored bytes of ranges being fetched or waiting to be consumed at once (at least one range)
READ_AHEAD_BYTES = 64 * MiB
#: plaintext bytes :func:`read_in_order` gathers before yielding them in request order
ORDERED_WINDOW_BYTES = 32 * MiB

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class PackRange:
    """One range read of a pack: ``length`` bytes at ``offset``, covering ``entries``."""

    pack_id: bytes
    offset: int
    length: int
    #: the blobs inside the range, each once, by offset
    entries: tuple[IndexEntry, ...]

    @property
    def key(self) -> str:
        return object_key("data", self.pack_id)


def plan_ranges(
    entries: Iterable[IndexEntry],
    *,
    max_gap: int = MAX_GAP,
    max_length: int = MAX_RANGE_BYTES,
) -> list[PackRange]:
    """The range reads that cover ``entries``: per pack, by offset, neighbours coalesced.

    Packs come in the order their first blob appears in ``entries``, so reading a file's blobs
    proceeds roughly from its start. A blob listed twice is covered once. A blob longer than
    ``max_length`` gets a range of its own.
    """
    by_pack: dict[bytes, dict[bytes, IndexEntry]] = {}
    for entry in entries:
        by_pack.setdefault(entry.pack_id, {})[entry.blob_id] = entry
    ranges: list[PackRange] = []
    for pack_id, blobs in by_pack.items():
        current: list[IndexEntry] = []
        start = end = 0
        for entry in sorted(blobs.values(), key=lambda e: e.offset):
            entry_end = entry.offset + entry.stored_length
            if current and entry.offset - end <= max_gap and entry_end - start <= max_length:
                current.append(entry)
                end = max(end, entry_end)
                continue
            if current:
                ranges.append(_range(pack_id, start, end, current))
            current, start, end = [entry], entry.offset, entry_end
        if current:
            ranges.append(_range(pack_id, start, end, current))
    return ranges


def _range(pack_id: bytes, start: int, end: int, entries: list[IndexEntry]) -> PackRange:
    return PackRange(pack_id=pack_id, offset=start, length=end - start, entries=tuple(entries))


@attrs.frozen
class _Frame:
    """A blob's stored bytes: ``data[start:start + entry.stored_length]``, or a cache entry."""

    entry: IndexEntry
    data: bytes
    start: int
    from_cache: bool

    def stored(self) -> bytes:
        if self.from_cache:
            return self.data
        return self.data[self.start : self.start + self.entry.stored_length]


class BlobReader:
    """Bulk reads of one repository's blobs; see the module docstring for how and why."""

    def __init__(
        self,
        repository: PackSource,
        *,
        workers: int | None = None,
        max_gap: int = MAX_GAP,
        max_range: int = MAX_RANGE_BYTES,
        read_ahead: int = READ_AHEAD_BYTES,
        cached: bool = True,
    ) -> None:
        self.repository = repository
        #: the object cache to read through and fill: none when ``cached`` is False (bytes
        #: that go straight into a file of their own gain nothing from a second copy)
        self.cache = repository.object_cache if cached else None
        self.workers = max(1, workers if workers is not None else repository.workers)
        self.max_gap = max_gap
        self.max_range = max_range
        self.read_ahead = read_ahead

    # --- planning -------------------------------------------------------------------------------

    def entry(self, blob_id: bytes) -> IndexEntry:
        """The index entry of ``blob_id``; a blob missing from the index is damage."""
        entry = self.repository.index.get(blob_id)
        if entry is None:
            raise CorruptObjectError(
                f"blob {blob_id.hex()} is not in the index of {self.repository.location}; "
                "the repository is damaged (run `stcore check`)"
            )
        return entry

    def plan(self, blob_ids: Iterable[bytes]) -> list[PackRange]:
        """The ranges covering ``blob_ids`` (each blob once); raises before any read if one is
        not in the index."""
        return self.plan_entries(self.entry(blob_id) for blob_id in blob_ids)

    def plan_entries(self, entries: Iterable[IndexEntry]) -> list[PackRange]:
        """:meth:`plan` for blobs whose index entries the caller already has."""
        return plan_ranges(entries, max_gap=self.max_gap, max_length=self.max_range)

    # --- one range ------------------------------------------------------------------------------

    def _frames(self, rng: PackRange) -> list[_Frame]:
        """The stored frames of a range's blobs: from the object cache where it has them, the
        rest with one backend read per coalesced run of the missing ones."""
        cache = self.cache
        if cache is None:
            return self._fetch(rng)
        frames: list[_Frame] = []
        missing: list[IndexEntry] = []
        for entry in rng.entries:
            stored = cache.get("blob", entry.blob_id.hex())
            if stored is None:
                missing.append(entry)
            else:
                frames.append(_Frame(entry, stored, 0, from_cache=True))
        for sub in self.plan_entries(missing):
            frames.extend(self._fetch(sub))
        return frames

    def _fetch(self, rng: PackRange) -> list[_Frame]:
        data = self.repository.read_object_range(rng.key, rng.offset, rng.length)
        return [_Frame(e, data, e.offset - rng.offset, from_cache=False) for e in rng.entries]

    def _unseal(self, frame: _Frame) -> bytes:
        """The verified plaintext of one frame; a damaged cache entry is dropped and refetched,
        a fetched frame is cached once it verifies."""
        entry = frame.entry
        name = entry.blob_id.hex()
        key = object_key("data", entry.pack_id)
        codec = self.repository.codec
        cache = self.cache
        stored = frame.stored()
        if frame.from_cache and cache is not None:
            try:
                return codec.unseal_blob(entry.blob_id, stored, entry.raw_length)
            except CorruptObjectError:
                cache.discard("blob", name)  # damaged on local disk: fetch it again
            stored = self.repository.read_object_range(key, entry.offset, entry.stored_length)
        try:
            data = codec.unseal_blob(entry.blob_id, stored, entry.raw_length)
        except CorruptObjectError as exc:
            if self.repository.index.copies(entry.blob_id):
                return self.repository.read_blob(entry.blob_id)  # another copy may be good
            raise CorruptObjectError(f"pack {key}, blob {name}: {exc}") from exc
        if cache is not None:
            cache.put_later("blob", name, stored)
        return data

    def _decoded(self, rng: PackRange) -> list[tuple[bytes, bytes]]:
        """Every blob of ``rng`` fetched and verified, on a pool thread: decompressing and
        hashing release the GIL, so ranges decode in parallel."""
        return [(frame.entry.blob_id, self._unseal(frame)) for frame in self._frames(rng)]

    def blobs(self, rng: PackRange) -> Iterator[tuple[IndexEntry, bytes]]:
        """Every blob of ``rng``, verified, one at a time (the range's bytes are read once)."""
        for frame in self._frames(rng):
            yield frame.entry, self._unseal(frame)

    # --- many ranges ----------------------------------------------------------------------------

    def run(
        self,
        ranges: Sequence[PackRange],
        task: Callable[[PackRange], T],
        weight: Callable[[PackRange], int] = lambda rng: rng.length,
    ) -> Iterator[T]:
        """``task(range)`` for every range on the thread pool, results as they complete.

        A range is started only while the ranges started and not yet collected weigh at most
        ``read_ahead`` bytes in all (one is always allowed): by default their stored length,
        which bounds memory when ``task`` returns a range's bytes. On an error the remaining
        ranges are cancelled and it propagates.
        """
        if self.workers == 1 or len(ranges) <= 1:
            for rng in ranges:
                yield task(rng)
            return
        pool = ThreadPoolExecutor(
            max_workers=min(self.workers, len(ranges)), thread_name_prefix="stcore-read"
        )
        pending: dict[Future[T], int] = {}
        held = following = 0
        try:
            while True:
                while following < len(ranges) and len(pending) < self.workers:
                    length = weight(ranges[following])
                    if pending and held + length > self.read_ahead:
                        break
                    pending[pool.submit(task, ranges[following])] = length
                    held += length
                    following += 1
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    held -= pending.pop(future)
                    yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def read_blobs(self, blob_ids: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
        """``(blob id, plaintext)`` for every id asked for, duplicates included.

        The order is not the request's: blobs read ahead (:mod:`stcore.repo.plaincache`)
        first, then range by range as the reads complete (each range's blobs by offset). An
        id asked for twice is read once and yielded twice. Every id to fetch is looked up
        before anything is read, so a blob missing from the index fails fast.
        """
        wanted: dict[bytes, int] = {}
        plain = self.repository.plain_cache
        for blob_id in blob_ids:
            ready = plain.get(blob_id) if self.cache is not None else None
            if ready is not None:  # read ahead, decoded and verified already
                yield blob_id, ready
                continue
            wanted[blob_id] = wanted.get(blob_id, 0) + 1
        if not wanted:
            return
        ranges = self.plan(wanted)
        try:
            for decoded in self.run(ranges, self._decoded, _stored_and_plain):
                for blob_id, data in decoded:
                    for _ in range(wanted[blob_id]):
                        yield blob_id, data
        finally:
            if self.cache is not None:
                self.cache.settle()  # the shared size counter: once per bulk read, at most


def _stored_and_plain(rng: PackRange) -> int:
    """What a decoded range holds in memory at most: its stored bytes and its plaintext."""
    return rng.length + sum(entry.raw_length for entry in rng.entries)


def read_in_order(
    repository: PackSource,
    blob_ids: Sequence[bytes],
    window: int = ORDERED_WINDOW_BYTES,
    *,
    cached: bool = True,
) -> Iterator[bytes]:
    """The plaintexts of ``blob_ids`` in the order asked, fetched in bulk a window at a time.

    Consecutive ids totalling about ``window`` plaintext bytes are read with one
    :meth:`Store.read_blobs` call and yielded in order, so a file's blobs cost a few range
    reads per pack while memory stays at one window. A window of a single blob goes through
    :meth:`Store.read_blob`, which is just as cheap. ``cached=False`` bypasses the object
    cache.
    """
    for batch in _windows(repository, blob_ids, window):
        if len(batch) == 1 and cached:
            yield repository.read_blob(batch[0])
            continue
        found = dict(repository.read_blobs(batch, cached=cached))
        for blob_id in batch:
            yield found[blob_id]


def read_files(
    repository: PackSource,
    contents: Sequence[Sequence[bytes]],
    window: int = ORDERED_WINDOW_BYTES,
) -> Iterator[bytes]:
    """Each file's bytes (``contents`` are their blob id lists), in order, read in bulk.

    Consecutive files totalling about ``window`` plaintext bytes share one
    :meth:`Store.read_blobs` call, so three thousand small documents in a few packs cost a
    few range requests, not one per document; a blob shared by several files is read once.
    Memory stays at one window plus the largest file.
    """
    index = repository.index
    files: list[Sequence[bytes]] = []
    size = 0
    for content in contents:
        files.append(content)
        for blob_id in content:
            entry = index.get(blob_id)
            size += entry.raw_length if entry is not None else 0
        if size >= window:
            yield from _assembled(repository, files)
            files, size = [], 0
    if files:
        yield from _assembled(repository, files)


def _assembled(repository: PackSource, files: Sequence[Sequence[bytes]]) -> Iterator[bytes]:
    found = dict(repository.read_blobs({b: None for content in files for b in content}))
    for content in files:
        yield b"".join(found[blob_id] for blob_id in content)


def _windows(
    repository: PackSource, blob_ids: Sequence[bytes], window: int
) -> Iterator[list[bytes]]:
    """Consecutive ``blob_ids`` in runs of about ``window`` plaintext bytes."""
    index = repository.index
    batch: list[bytes] = []
    size = 0
    for blob_id in blob_ids:
        entry = index.get(blob_id)
        batch.append(blob_id)
        size += entry.raw_length if entry is not None else 0
        if size >= window:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
