"""The in-memory index: where every stored blob lives, in about 160 bytes per blob.

A repository's index answers one question millions of times per backup: is this blob already
stored, and if so in which pack, at which offset, how long. Holding an ``IndexEntry`` object per
blob costs about 270 bytes; this table keeps a dict from blob id to a row number and the row's
fields in typed arrays (pack number, offset, stored and raw length, type), so the cost is the
dict slot, the 32-byte id object and 17 bytes of columns. ``IndexEntry`` objects are made only
for the blobs a caller asks about.

Offsets and lengths are 32-bit, as in the index objects on storage (packs are far smaller).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping

from stcore.models import BLOB_TYPE_CODES, BLOB_TYPES_BY_CODE, BlobType, IndexEntry


class BlobIndex(Mapping[bytes, IndexEntry]):
    """blob id -> :class:`IndexEntry`; the first location added for an id wins, and any other
    location of the same blob (a copy stored again to heal damage, or written by two backups at
    once) is kept aside in :meth:`copies`, for readers to fall back on and prune to choose from.
    """

    __slots__ = (
        "_copies",
        "_offset",
        "_pack",
        "_pack_numbers",
        "_packs",
        "_raw",
        "_rows",
        "_stored",
        "_type",
    )

    def __init__(self, entries: Iterable[IndexEntry] = ()) -> None:
        self._rows: dict[bytes, int] = {}
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
        if blob_id in self._rows:
            if self._packs[self._pack[self._rows[blob_id]]] != pack_id:
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
            return False
        number = self._pack_numbers.get(pack_id)
        if number is None:
            number = self._pack_numbers[pack_id] = len(self._packs)
            self._packs.append(pack_id)
        self._rows[blob_id] = len(self._offset)
        self._pack.append(number)
        self._offset.append(offset)
        self._stored.append(stored_length)
        self._raw.append(raw_length)
        self._type.append(type_code)
        return True

    def copies(self, blob_id: bytes) -> list[IndexEntry]:
        """The other known locations of ``blob_id`` (not the one ``index[blob_id]`` gives)."""
        return list(self._copies.get(blob_id, ()))

    def locations(self) -> Iterator[tuple[bytes, bytes, int, int]]:
        """``(blob id, pack id, offset, stored length)`` of every known copy of every blob,
        without building an ``IndexEntry`` per blob (check walks millions of them)."""
        packs, pack, offset, stored = self._packs, self._pack, self._offset, self._stored
        for blob_id, row in self._rows.items():
            yield blob_id, packs[pack[row]], offset[row], stored[row]
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
        self._rows.pop(blob_id, None)
        self._copies.pop(blob_id, None)

    def avoid_packs(self, blob_id: bytes, packs: set[bytes]) -> bool:
        """Make a copy outside ``packs`` the location of ``blob_id``, if there is one; return
        whether the blob now has a location outside them."""
        if blob_id not in self._rows:
            return False
        if self[blob_id].pack_id not in packs:
            return True
        for number, copy in enumerate(self._copies.get(blob_id, ())):
            if copy.pack_id not in packs:
                others = self._copies[blob_id]
                others[number] = self[blob_id]
                self._rows.pop(blob_id)
                self.add(copy)
                return True
        return False

    def update(self, entries: Iterable[IndexEntry]) -> None:
        for entry in entries:
            self.add(entry)

    def __getitem__(self, blob_id: bytes) -> IndexEntry:
        row = self._rows[blob_id]
        return IndexEntry(
            blob_id=blob_id,
            blob_type=BLOB_TYPES_BY_CODE[self._type[row]],
            pack_id=self._packs[self._pack[row]],
            offset=self._offset[row],
            stored_length=self._stored[row],
            raw_length=self._raw[row],
        )

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._rows

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def raw_bytes(self, blob_type: BlobType | None = None) -> int:
        """The sum of the blobs' plaintext lengths, of one type or of all."""
        if blob_type is None:
            return sum(self._raw)
        code = BLOB_TYPE_CODES[blob_type]
        return sum(raw for raw, t in zip(self._raw, self._type, strict=True) if t == code)
