"""The in-memory index: where every stored blob lives, in about 60 bytes per blob.

A repository's index answers one question millions of times per backup: is this blob already
stored, and if so in which pack, at which offset, how long. Holding an ``IndexEntry`` object per
blob costs about 270 bytes, and even a dict from id to row number about 160 (the dict slot, a
32-byte ``bytes`` object and an ``int``). So the rows live in typed arrays: the ids side by side in
one ``bytearray`` (32 bytes each), the fields in columns (pack number, offset, stored and raw
length, type: 17 bytes), and an open-addressing hash table of row numbers (4 bytes a slot, kept
at most two-thirds full: 6 to 12 bytes a row). ``IndexEntry`` objects are made only for the blobs
a caller asks about. Measured with ``benchmarks/index_memory.py``.

Why by hand: no maintained library offers a compact bytes-to-row table for CPython (numpy has no
hash table, and a dict's per-entry objects are what this avoids). The table is small: linear
probing over ``array("I")``, slots hashed with Python's own salted ``hash`` of the id, so ids
chosen by whoever wrote an index object cannot pile into one chain; a discarded row leaves a
tombstone slot and a dead row, both rare (healing damage), and the table is rebuilt as it grows.

Offsets and lengths are 32-bit, as in the index objects on storage (packs are far smaller).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping

from stcore.models import BLOB_TYPE_CODES, BLOB_TYPES_BY_CODE, BlobType, IndexEntry
from stcore.repo.format import ID_LENGTH

#: a slot that never held a row (0) or held one that was discarded
_EMPTY = 0
_GONE = 0xFFFFFFFF
#: the type code of a discarded row
_DEAD = 255


class BlobIndex(Mapping[bytes, IndexEntry]):
    """blob id -> :class:`IndexEntry`; the first location added for an id wins, and any other
    location of the same blob (a copy stored again to heal damage, or written by two backups at
    once) is kept aside in :meth:`copies`, for readers to fall back on and prune to choose from.
    """

    __slots__ = (
        "_copies",
        "_ids",
        "_live",
        "_mask",
        "_offset",
        "_pack",
        "_pack_numbers",
        "_packs",
        "_raw",
        "_stored",
        "_table",
        "_type",
        "_used",
    )

    def __init__(self, entries: Iterable[IndexEntry] = ()) -> None:
        self._ids = bytearray()
        self._table = array("I", bytes(4 * 8))
        self._mask = 7
        self._used = 0  # slots that are not empty: live rows and tombstones
        self._live = 0
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

    # --- the hash table -----------------------------------------------------------------------

    def _row(self, blob_id: bytes) -> int:
        """``blob_id``'s row, or -1."""
        table, ids, mask = self._table, self._ids, self._mask
        slot = hash(blob_id) & mask
        while value := table[slot]:
            if value != _GONE:
                start = (value - 1) * ID_LENGTH
                if ids[start : start + ID_LENGTH] == blob_id:
                    return value - 1
            slot = (slot + 1) & mask
        return -1

    def _slot(self, blob_id: bytes) -> int:
        """The slot holding ``blob_id``'s row (it must be there)."""
        table, ids, mask = self._table, self._ids, self._mask
        slot = hash(blob_id) & mask
        while True:
            value = table[slot]
            if value not in (_EMPTY, _GONE):
                start = (value - 1) * ID_LENGTH
                if ids[start : start + ID_LENGTH] == blob_id:
                    return slot
            slot = (slot + 1) & mask

    def _place(self, blob_id: bytes, row: int) -> None:
        """Put ``row`` (of ``blob_id``, not in the table) in the first free slot of its chain."""
        table, mask = self._table, self._mask
        slot = hash(blob_id) & mask
        while (value := table[slot]) not in (_EMPTY, _GONE):
            slot = (slot + 1) & mask
        if value == _EMPTY:
            self._used += 1
        table[slot] = row + 1

    def reserve(self, rows: int) -> None:
        """Size the table for ``rows`` live rows (a bulk load then never rebuilds it)."""
        slots = self._mask + 1
        while rows * 3 >= slots * 2:
            slots *= 2
        if slots != self._mask + 1:
            self._rebuild(slots)

    def _rebuild(self, slots: int) -> None:
        self._table = array("I", bytes(4 * slots))
        self._mask = slots - 1
        self._used = 0
        ids, types = self._ids, self._type
        for row in range(len(types)):
            if types[row] != _DEAD:
                self._place(bytes(ids[row * ID_LENGTH : (row + 1) * ID_LENGTH]), row)

    # --- rows ---------------------------------------------------------------------------------

    def add(self, entry: IndexEntry) -> bool:
        """Record ``entry`` unless its blob is already known; return whether it was added."""
        return self.add_fields(
            entry.blob_id,
            BLOB_TYPE_CODES[entry.blob_type],
            entry.pack_id,
            entry.offset,
            entry.stored_length,
            entry.raw_length,
        )

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
        if len(blob_id) != ID_LENGTH:
            raise ValueError(f"a blob id is {ID_LENGTH} bytes, not {len(blob_id)}")
        # one walk along the chain: find the id, or the slot it would go in
        table, ids, mask = self._table, self._ids, self._mask
        slot = hash(blob_id) & mask
        free = -1
        while value := table[slot]:
            if value == _GONE:
                if free < 0:
                    free = slot
            else:
                start = (value - 1) * ID_LENGTH
                if ids[start : start + ID_LENGTH] == blob_id:
                    self._add_copy(
                        value - 1, blob_id, type_code, pack_id, offset, stored_length, raw_length
                    )
                    return False
            slot = (slot + 1) & mask
        number = self._pack_numbers.get(pack_id)
        if number is None:
            number = self._pack_numbers[pack_id] = len(self._packs)
            self._packs.append(pack_id)
        row = len(self._type)
        ids += blob_id
        self._pack.append(number)
        self._offset.append(offset)
        self._stored.append(stored_length)
        self._raw.append(raw_length)
        self._type.append(type_code)
        self._live += 1
        if free >= 0:
            table[free] = row + 1
        else:
            table[slot] = row + 1
            self._used += 1
            if self._used * 3 >= (mask + 1) * 2:
                # double when live rows fill it; same size when tombstones do
                self._rebuild((mask + 1) * (2 if self._live * 3 >= mask + 1 else 1))
        return True

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
        """Drop ``blob_id``'s row (present): a tombstone in the table, a dead row."""
        slot = self._slot(blob_id)
        row = self._table[slot] - 1
        self._table[slot] = _GONE
        self._type[row] = _DEAD
        self._raw[row] = 0
        self._live -= 1

    def _live_rows(self) -> Iterator[int]:
        types = self._type
        if self._live == len(types):
            return iter(range(len(types)))
        return (row for row in range(len(types)) if types[row] != _DEAD)

    def _id(self, row: int) -> bytes:
        return bytes(self._ids[row * ID_LENGTH : (row + 1) * ID_LENGTH])

    def copies(self, blob_id: bytes) -> list[IndexEntry]:
        """The other known locations of ``blob_id`` (not the one ``index[blob_id]`` gives)."""
        return list(self._copies.get(blob_id, ()))

    def locations(self) -> Iterator[tuple[bytes, bytes, int, int]]:
        """``(blob id, pack id, offset, stored length)`` of every known copy of every blob,
        without building an ``IndexEntry`` per blob (check walks millions of them)."""
        packs, pack, offset, stored = self._packs, self._pack, self._offset, self._stored
        for row in self._live_rows():
            yield self._id(row), packs[pack[row]], offset[row], stored[row]
        for copies in self._copies.values():
            for copy in copies:
                yield copy.blob_id, copy.pack_id, copy.offset, copy.stored_length

    def all_entries(self) -> Iterator[IndexEntry]:
        """Every known location of every blob, copies included."""
        yield from self.values()
        for copies in self._copies.values():
            yield from copies

    def discard(self, blob_id: bytes) -> None:
        """Forget ``blob_id`` (every location): a backup then stores it again."""
        if blob_id in self:
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
        row = self._row(blob_id) if isinstance(blob_id, bytes) else -1
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

    def __contains__(self, blob_id: object) -> bool:
        return isinstance(blob_id, bytes) and self._row(blob_id) >= 0

    def __iter__(self) -> Iterator[bytes]:
        return (self._id(row) for row in self._live_rows())

    def __len__(self) -> int:
        return self._live

    def memory(self) -> int:
        """Bytes held by the rows and the table (not the pack ids, one per pack)."""
        columns = (self._pack, self._offset, self._stored, self._raw, self._type, self._table)
        return len(self._ids) + sum(c.itemsize * len(c) for c in columns)

    def raw_bytes(self, blob_type: BlobType | None = None) -> int:
        """The sum of the blobs' plaintext lengths, of one type or of all."""
        if blob_type is None:
            return sum(self._raw)
        code = BLOB_TYPE_CODES[blob_type]
        return sum(raw for raw, t in zip(self._raw, self._type, strict=True) if t == code)
