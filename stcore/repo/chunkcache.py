"""Verified plaintext of the chunks a reader decoded, on local disk, read back a slice at a time.

Reading a backed-up file decodes every chunk under the bytes asked for: decompress, then hash
against the chunk's id. Reading it again decodes again, whole chunks every time: measured on
a local repository, a warm read of a 139 MiB Parquet file cost 2.8 times reading the original
file, and two of its columns 8 times, because each 0.9 MiB column chunk sits in two or three
content-defined chunks of about 1.25 MiB that were decoded whole.

:class:`ChunkCache` keeps the plaintext of each chunk a
:class:`~stcore.access.views.SnapshotFile` decoded as an entry (kind ``plain``) of the store's
local :class:`~stcore.repo.objectcache.ObjectCache`: a header of digests of its
:data:`PIECE`-byte pieces, computed right after the chunk was verified against its id, then the
plaintext. A later read takes only the pieces under the bytes asked for and checks each
against its digest, so a read costs what reading the original file costs plus hashing what it
read. Measured (``benchmarks/ai_access.py``, the same file, warm): a whole read 1.16 times
the original file, two columns 1.33 times, all columns through pandas 1.12 times.

A damaged or truncated entry fails that check; it is dropped and the chunk is decoded from
the repository again. The digests (XXH3-128, from ``xxhash``: about 15 GB/s,
where BLAKE3 managed 3.5 and held the GIL on pieces this small) guard against damage, not
against someone who can write to the cache folder, which is private to its user like the
files it came from. Entries are read through ``mmap``: a file cut short in place while mapped
would fault the process, and the cache never does that (it renames new entries in and unlinks
old ones).

Only unencrypted repositories use it: an encrypted repository's plaintext never reaches disk.
A file bigger than a quarter of the cache bound is not admitted (one streamed read of a large
file would otherwise rewrite the whole cache); its chunks are decoded on every read, as
before. Entries count against the bound, go least recently used first, show in
``stcore cache stats`` and go with ``cache clear``.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from collections import OrderedDict

import xxhash

from stcore.repo.objectcache import ObjectCache

#: bytes per digested piece: a read hashes at most this much it did not ask for at each end
PIECE = 128 * 1024
#: bytes of each piece's digest: XXH3-128, for damage (not a cryptographic promise)
DIGEST = 16
#: magic, piece size, plaintext length
HEADER = struct.Struct("<4sIQ")
MAGIC = b"STPC"
KIND = "plain"
#: a file larger than this share of the cache bound is not cached
ADMIT_SHARE = 4
#: entries kept open (with their digests parsed) for the next read
OPEN_ENTRIES = 128
#: bytes read past the header at first, in the same call: the digests of a chunk up to 32 MiB
HEAD_GUESS = 4096
#: a header naming a longer chunk is damaged (chunks are at most a few MiB)
MAX_CHUNK = 1 << 30


def _digests(data: bytes | memoryview) -> bytes:
    view = memoryview(data)
    return b"".join(
        xxhash.xxh3_128_digest(view[at : at + PIECE]) for at in range(0, len(view), PIECE)
    )


class _Open:
    """One entry being read: its file mapped (or its bytes while it waits to be written), its
    plaintext length and the digests of its pieces, parsed once."""

    __slots__ = ("data_at", "digests", "entry", "length")

    def __init__(self, entry: mmap.mmap | bytes, length: int, digests: bytes, data_at: int) -> None:
        self.entry = entry
        self.length = length
        self.digests = digests
        self.data_at = data_at


def _map(entry: int | bytes) -> mmap.mmap | bytes | None:
    """The entry's bytes without reading them: a file is mapped (its descriptor closed);
    None if it cannot be (empty: damaged)."""
    if isinstance(entry, bytes):
        return entry
    try:
        return mmap.mmap(entry, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    finally:
        os.close(entry)


class ChunkCache:
    """Plaintext chunks in ``cache`` (entries of kind ``plain``), checked piece by piece.

    The last :data:`OPEN_ENTRIES` entries read stay mapped (``mmap``) with their digests
    parsed, so reading one again copies its bytes once, from the page cache, with no system
    call. Entries are immutable and the cache never rewrites a file in place (it renames new
    ones in and unlinks old ones), so a mapping always shows its entry's own bytes, even after
    eviction; every read still checks the pieces it returns.
    """

    def __init__(self, cache: ObjectCache) -> None:
        self.cache = cache
        self.damaged = 0
        self._open: OrderedDict[bytes, _Open] = OrderedDict()
        self._lock = threading.Lock()

    def admits(self, file_size: int) -> bool:
        """Whether the chunks of a file this big are kept."""
        return file_size <= self.cache.max_bytes // ADMIT_SHARE

    def put(self, chunk_id: bytes, plaintext: bytes) -> None:
        """Keep a chunk that was just verified against its id (written behind the read)."""
        entry = HEADER.pack(MAGIC, PIECE, len(plaintext)) + _digests(plaintext) + plaintext
        self.cache.put_later(KIND, chunk_id.hex(), entry)
        self.cache.settle()  # what is written counts against the bound (at most once a second)

    def read(self, chunk_id: bytes, start: int, end: int) -> bytes | memoryview | None:
        """Bytes ``[start, end)`` of the chunk's plaintext, each piece under them checked
        against its digest; None if the chunk is not here, or its entry is damaged (then it
        is dropped)."""
        opened = self._opened(chunk_id)
        if opened is None:
            return None
        found = _read_checked(opened, start, end)
        if found is None:
            self._damaged(chunk_id)
        return found

    def read_into(self, chunk_id: bytes, start: int, end: int, out: memoryview) -> bool:
        """:meth:`read` into ``out`` (``end - start`` bytes): the whole pieces under it are
        read straight into it and checked there, so reading costs no buffer of its own.
        False (and ``out`` is to be filled another way) if the chunk is not here or damaged."""
        opened = self._opened(chunk_id)
        if opened is None:
            return False
        if _read_checked_into(opened, start, end, out):
            return True
        self._damaged(chunk_id)
        return False

    def _opened(self, chunk_id: bytes) -> _Open | None:
        """The entry, from those held open or opened and its header parsed (then kept open
        when it is a file); None if it is not here, or damaged (then dropped)."""
        with self._lock:
            opened = self._open.get(chunk_id)
            if opened is not None:
                self._open.move_to_end(chunk_id)
                return opened
        found = self.cache.open_entry(KIND, chunk_id.hex())
        if found is None:
            return None
        entry = _map(found)
        opened = _parse(entry) if entry is not None else None
        if opened is None:
            self._damaged(chunk_id)
            return None
        if isinstance(entry, mmap.mmap):
            self._keep(chunk_id, opened)
        return opened

    def _keep(self, chunk_id: bytes, opened: _Open) -> None:
        # A mapping dropped here is unmapped once no reader holds a slice of it (reference
        # counting): closing it explicitly could pull it from under a reader on another thread.
        with self._lock:
            self._open[chunk_id] = opened
            self._open.move_to_end(chunk_id)
            while len(self._open) > OPEN_ENTRIES:
                self._open.popitem(last=False)

    def _damaged(self, chunk_id: bytes) -> None:
        self.damaged += 1
        with self._lock:
            self._open.pop(chunk_id, None)
        self.cache.discard(KIND, chunk_id.hex())

    def close(self) -> None:
        """Let go of the entries held open (each is unmapped once no slice of it is in use)."""
        with self._lock:
            self._open.clear()


def _pread(entry: mmap.mmap | bytes, offset: int, length: int) -> memoryview:
    return memoryview(entry)[offset : offset + length]


def _parse(entry: mmap.mmap | bytes) -> _Open | None:
    """The header and digests of an entry; None if they are damaged or cut short."""
    head = _pread(entry, 0, HEADER.size + HEAD_GUESS)
    if len(head) < HEADER.size:
        return None
    magic, piece, length = HEADER.unpack_from(head)
    if magic != MAGIC or piece != PIECE or length > MAX_CHUNK:
        return None
    data_at = HEADER.size + -(-length // piece) * DIGEST
    if len(head) < data_at:
        head = _pread(entry, 0, data_at)
        if len(head) < data_at:
            return None
    return _Open(entry, length, bytes(head[HEADER.size : data_at]), data_at)


def _read_checked(opened: _Open, start: int, end: int) -> bytes | memoryview | None:
    if not 0 <= start <= end <= opened.length:
        return None
    if start == end:
        return b""
    first, last = start // PIECE, (end - 1) // PIECE
    span_end = min(opened.length, (last + 1) * PIECE)
    data = _pread(opened.entry, opened.data_at + first * PIECE, span_end - first * PIECE)
    if len(data) != span_end - first * PIECE:
        return None  # truncated
    if _digests(data) != opened.digests[first * DIGEST : (last + 1) * DIGEST]:
        return None
    inside = start - first * PIECE
    if inside == 0 and len(data) == end - start:
        return data
    return memoryview(data)[inside : inside + end - start]


def _read_checked_into(opened: _Open, start: int, end: int, out: memoryview) -> bool:
    """Bytes ``[start, end)`` into ``out``: whole pieces inside the range straight into it, a
    piece cut by either end through a small buffer; each piece checked."""
    if not 0 <= start <= end <= opened.length or len(out) != end - start:
        return False
    if start == end:
        return True
    first, last = start // PIECE, (end - 1) // PIECE
    inner_first = -(-start // PIECE)  # the first piece that starts at or after ``start``
    inner_end = end // PIECE if end < opened.length else last + 1  # pieces wholly inside
    for number in range(first, last + 1):
        if inner_first <= number < inner_end:
            continue
        edge = _read_checked(opened, max(start, number * PIECE), min(end, (number + 1) * PIECE))
        if edge is None:
            return False
        at = max(start, number * PIECE) - start
        out[at : at + len(edge)] = edge
    if inner_first < inner_end:
        begin = inner_first * PIECE
        stop = min(opened.length, inner_end * PIECE)
        view = out[begin - start : stop - start]
        stored = _pread(opened.entry, opened.data_at + begin, stop - begin)
        if len(stored) != len(view):
            return False  # truncated
        view[:] = stored
        expected = opened.digests[inner_first * DIGEST : inner_end * DIGEST]
        if _digests(view) != expected:
            return False
    return True
