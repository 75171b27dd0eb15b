"""The in-memory index: where every stored blob lives, in about 60 bytes per blob.

A repository's index answers one question millions of times per backup: is this blob already
stored, and if so in which pack, at which offset, how long. Holding an ``IndexEntry`` object per
blob costs about 270 bytes, and even a dict from id to row number about 150. Here the ids are an
:class:`~stcore.repo.idtable.IdTable` (32 bytes and a slot each) and the rows' fields typed arrays
(pack number, offset, stored and raw length, type: 17 bytes), 61 bytes a blob in all
(``benchmarks/index_memory.py``). ``IndexEntry`` objects are made only for the blobs a caller
asks about.

Offsets and lengths are 32-bit, as in the index objects on storage (packs are far smaller).
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence

from stcore.models import BLOB_TYPE_CODES, BLOB_TYPES_BY_CODE, BlobType, IndexEntry
from stcore.repo.idtable import IdTable

#: one location as plain fields (a row of an index object): blob id, type code, pack id,
#: offset, stored length, raw length
IndexRow = tuple[bytes, int, bytes, int, int, int]

#: rows :meth:`BlobIndex.add_rows` takes at a time
_BATCH = 4096


def entry_row(entry: IndexEntry) -> IndexRow:
    """``entry`` as an :data:`IndexRow`."""
    return (
        entry.blob_id,
        BLOB_TYPE_CODES[entry.blob_type],
        entry.pack_id,
        entry.offset,
        entry.stored_length,
        entry.raw_length,
    )


class BlobIndex(Mapping[bytes, IndexEntry]):
    """blob id -> :class:`IndexEntry`; the first location added for an id wins, and any other
    location of the same blob (a copy stored again to heal damage, or written by two backups at
    once) is kept aside in :meth:`copies`, for readers to fall back on and prune to choose from.
    """

    __slots__ = (
        "_copies",
        "_ids",
        "_offset",
        "_pack",
        "_pack_numbers",
        "_packs",
        "_raw",
        "_stored",
        "_type",
    )

    def __init__(self, entries: Iterable[IndexEntry] = ()) -> None:
        self._ids = IdTable()
        self._packs: list[bytes] = []
        self._pack_numbers: dict[bytes, int] = {}
        self._pack = array("I")
        self._offset = array("I")
        self._stored = array("I")
        self._raw = array("I")
        self._type = array("B")
        #: the other locations of blobs stored more than once (rare: kept as objects)
        self._copies: dict[bytes, list[IndexEntry]] = {}
        for entry in entries:
            self.add(entry)

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` blobs (a bulk load then never rebuilds the table)."""
        self._ids.reserve(rows)

    # --- rows ---------------------------------------------------------------------------------

    def add(self, entry: IndexEntry) -> bool:
        """Record ``entry`` unless its blob is already known; return whether it was added."""
        return self.add_fields(*entry_row(entry))

    def add_fields(
        self,
        blob_id: bytes,
        type_code: int,
        pack_id: bytes,
        offset: int,
        stored_length: int,
        raw_length: int,
    ) -> bool:
        """:meth:`add` without building an ``IndexEntry`` (reading index objects)."""
        row = self._ids.insert(blob_id)
        if row < 0:
            self._add_copy(-1 - row, blob_id, type_code, pack_id, offset, stored_length, raw_length)
            return False
        number = self._pack_numbers.get(pack_id)
        if number is None:
            number = self._pack_numbers[pack_id] = len(self._packs)
            self._packs.append(pack_id)
        self._pack.append(number)
        self._offset.append(offset)
        self._stored.append(stored_length)
        self._raw.append(raw_length)
        self._type.append(type_code)
        return True

    def add_rows(
        self, packs: Sequence[bytes], rows: Iterable[tuple[bytes, int, int, int, int, int]]
    ) -> None:
        """:meth:`add_fields` for each row of an index object: ``(blob id, type code, pack
        number into packs, offset, stored length, raw length)``, taken in batches (loading an
        index is a loop over every blob of the repository)."""
        numbers = []
        for pack_id in packs:
            number = self._pack_numbers.get(pack_id)
            if number is None:
                number = self._pack_numbers[pack_id] = len(self._packs)
                self._packs.append(pack_id)
            numbers.append(number)
        pack, offset, stored, raw, kind = (
            self._pack,
            self._offset,
            self._stored,
            self._raw,
            self._type,
        )
        insert_all = self._ids.insert_all
        rows = iter(rows)
        while batch := list(itertools.islice(rows, _BATCH)):
            for found, (blob_id, code, number, at, length, plain) in zip(
                insert_all([row[0] for row in batch]), batch, strict=True
            ):
                if found < 0:
                    self._add_copy(-1 - found, blob_id, code, packs[number], at, length, plain)
                    continue
                pack.append(numbers[number])
                offset.append(at)
                stored.append(length)
                raw.append(plain)
                kind.append(code)

    def _add_copy(
        self,
        row: int,
        blob_id: bytes,
        type_code: int,
        pack_id: bytes,
        offset: int,
        stored_length: int,
        raw_length: int,
    ) -> None:
        """Keep another location of the blob in ``row``, unless it is the same pack."""
        if self._packs[self._pack[row]] != pack_id:
            self._copies.setdefault(blob_id, []).append(
                IndexEntry(
                    blob_id=blob_id,
                    blob_type=BLOB_TYPES_BY_CODE[type_code],
                    pack_id=pack_id,
                    offset=offset,
                    stored_length=stored_length,
                    raw_length=raw_length,
                )
            )

    def _remove(self, blob_id: bytes) -> None:
        """Drop ``blob_id``'s row: a dead row, not counted."""
        row = self._ids.remove(blob_id)
        if row >= 0:
            self._raw[row] = 0

    def copies(self, blob_id: bytes) -> list[IndexEntry]:
        """The other known locations of ``blob_id`` (not the one ``index[blob_id]`` gives)."""
        return list(self._copies.get(blob_id, ()))

    def locations(self) -> Iterator[tuple[bytes, bytes, int, int]]:
        """``(blob id, pack id, offset, stored length)`` of every known copy of every blob,
        without building an ``IndexEntry`` per blob (check walks millions of them)."""
        packs, pack, offset, stored = self._packs, self._pack, self._offset, self._stored
        ids = self._ids
        for row in ids.live_rows():
            yield ids.key(row), packs[pack[row]], offset[row], stored[row]
        for copies in self._copies.values():
            for copy in copies:
                yield copy.blob_id, copy.pack_id, copy.offset, copy.stored_length

    def fields(self) -> Iterator[IndexRow]:
        """Every known location of every blob (copies too) as plain fields: what encoding an
        index object and merging one index into another need, without an ``IndexEntry`` per
        blob (a first backup's index of 78,000 new blobs was built into objects three times)."""
        ids, packs, pack = self._ids, self._packs, self._pack
        kind, offset, stored, raw = self._type, self._offset, self._stored, self._raw
        for row in ids.live_rows():
            yield ids.key(row), kind[row], packs[pack[row]], offset[row], stored[row], raw[row]
        for copies in self._copies.values():
            yield from map(entry_row, copies)

    def merge(self, other: BlobIndex) -> None:
        """Add every location ``other`` knows, as :meth:`add` would one by one (in batches,
        through :meth:`add_rows`: a first backup merges a row for each of its blobs)."""
        packs = list(other._packs)
        numbers = dict(other._pack_numbers)
        for copies in other._copies.values():
            for copy in copies:
                if copy.pack_id not in numbers:
                    numbers[copy.pack_id] = len(packs)
                    packs.append(copy.pack_id)
        rows = other.fields()
        self.add_rows(packs, ((b, c, numbers[p], o, s, r) for b, c, p, o, s, r in rows))

    def all_entries(self) -> Iterator[IndexEntry]:
        """Every known location of every blob, copies included."""
        yield from self.values()
        for copies in self._copies.values():
            yield from copies

    def discard(self, blob_id: bytes) -> None:
        """Forget ``blob_id`` (every location): a backup then stores it again."""
        self._remove(blob_id)
        self._copies.pop(blob_id, None)

    def avoid_packs(self, blob_id: bytes, packs: set[bytes]) -> bool:
        """Make a copy outside ``packs`` the location of ``blob_id``, if there is one; return
        whether the blob now has a location outside them."""
        if blob_id not in self:
            return False
        if self[blob_id].pack_id not in packs:
            return True
        for number, copy in enumerate(self._copies.get(blob_id, ())):
            if copy.pack_id not in packs:
                others = self._copies[blob_id]
                others[number] = self[blob_id]
                self._remove(blob_id)
                self.add(copy)
                return True
        return False

    def update(self, entries: Iterable[IndexEntry]) -> None:
        for entry in entries:
            self.add(entry)

    def __getitem__(self, blob_id: bytes) -> IndexEntry:
        row = self._ids.find(blob_id) if isinstance(blob_id, bytes) else -1
        if row < 0:
            raise KeyError(blob_id)
        return IndexEntry(
            blob_id=blob_id,
            blob_type=BLOB_TYPES_BY_CODE[self._type[row]],
            pack_id=self._packs[self._pack[row]],
            offset=self._offset[row],
            stored_length=self._stored[row],
            raw_length=self._raw[row],
        )

    def location(self, blob_id: bytes) -> tuple[bytes, int] | None:
        """``(pack id, offset)`` of ``blob_id``'s first copy, without an ``IndexEntry``."""
        row = self._ids.find(blob_id)
        if row < 0:
            return None
        return self._packs[self._pack[row]], self._offset[row]

    def __contains__(self, blob_id: object) -> bool:
        return isinstance(blob_id, bytes) and self._ids.find(blob_id) >= 0

    def has_all(self, blob_ids: Sequence[bytes]) -> bool:
        """Whether every one of ``blob_ids`` is here (a files-cache row's content, checked for
        each unchanged file of a backup: one call, not a membership test per blob)."""
        find = self._ids.find
        if len(blob_ids) == 1:  # most files: one blob, no generator
            return find(blob_ids[0]) >= 0
        return all(find(blob_id) >= 0 for blob_id in blob_ids)

    def __iter__(self) -> Iterator[bytes]:
        ids = self._ids
        return (ids.key(row) for row in ids.live_rows())

    def __len__(self) -> int:
        return len(self._ids)

    def memory(self) -> int:
        """Bytes held by the rows and the table (not the pack ids, one per pack)."""
        columns = (self._pack, self._offset, self._stored, self._raw, self._type)
        return self._ids.memory() + sum(c.itemsize * len(c) for c in columns)

    def raw_bytes(self, blob_type: BlobType | None = None) -> int:
        """The sum of the blobs' plaintext lengths, of one type or of all."""
        if blob_type is None:
            return sum(self._raw)
        code = BLOB_TYPE_CODES[blob_type]
        return sum(raw for raw, t in zip(self._raw, self._type, strict=True) if t == code)
