"""A compact table from 32-byte ids to row numbers: the index's and the files cache's lookups.

Both answer "which row holds this id" for hundreds of thousands of ids, and a dict from ``bytes``
to ``int`` costs about 150 bytes an entry (the slot, a 32-byte ``bytes`` object, an ``int``).
Here the ids sit side by side in one ``bytearray`` (row ``n`` at ``32 * n``) and an open-addressing
hash table of row numbers (``array("I")``, linear probing, at most two-thirds full) finds them:
32 bytes plus 6 to 12 of table per id. Slots come from Python's own salted ``hash`` of the id, so
ids chosen by whoever wrote an index object or a cache cannot pile into one chain. A removed id
leaves a tombstone slot and a dead row (rare: healing damage, files gone); the table is rebuilt
as it fills. Rows are numbered in the order ids were added and never reused, so callers keep
their own columns beside it.

Why by hand: no maintained library offers such a table for CPython (numpy has no hash table, and
the dict's per-entry objects are what this avoids). A lookup is a short Python loop, about 0.9 us
against 0.2 us for a dict (``benchmarks/index_memory.py``).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence

#: the length of every id in the table
ID_BYTES = 32

#: slot values: never used, and used by an id since removed; otherwise a row number + 1
_EMPTY = 0
_GONE = 0xFFFFFFFF


class IdTable:
    """32-byte ids -> rows 0, 1, 2... in the order they were added."""

    __slots__ = ("_dead", "_ids", "_mask", "_table", "_used")

    def __init__(self) -> None:
        self._ids = bytearray()
        self._table = array("I", bytes(4 * 8))
        self._mask = 7
        self._used = 0  # slots that are not empty: live rows and tombstones
        self._dead: set[int] = set()  # rows whose id was removed

    def __len__(self) -> int:
        """Live ids (rows not removed)."""
        return len(self._ids) // ID_BYTES - len(self._dead)

    @property
    def rows(self) -> int:
        """Rows ever added, removed ones included: the length of the callers' columns."""
        return len(self._ids) // ID_BYTES

    def find(self, key: bytes) -> int:
        """``key``'s row, or -1."""
        table, ids, mask = self._table, self._ids, self._mask
        slot = hash(key) & mask
        while value := table[slot]:
            if value != _GONE:
                start = (value - 1) * ID_BYTES
                if ids[start : start + ID_BYTES] == key:
                    return value - 1
            slot = (slot + 1) & mask
        return -1

    def insert(self, key: bytes) -> int:
        """Add ``key`` and return its new row; if it is there already, ``-1 - its row``."""
        return self.insert_all((key,))[0]

    def insert_all(self, keys: Sequence[bytes]) -> list[int]:
        """:meth:`insert` of each key in turn, what it returns for each: one loop, so loading
        an index or a files cache makes no method call per key."""
        results = []
        table, ids, mask = self._table, self._ids, self._mask
        for key in keys:
            if len(key) != ID_BYTES:
                raise ValueError(f"an id is {ID_BYTES} bytes, not {len(key)}")
            slot = hash(key) & mask
            free = -1
            while value := table[slot]:  # one walk: find it, or the slot it goes in
                if value == _GONE:
                    if free < 0:
                        free = slot
                else:
                    start = (value - 1) * ID_BYTES
                    if ids[start : start + ID_BYTES] == key:
                        break
                slot = (slot + 1) & mask
            if value and value != _GONE:
                results.append(-value)
                continue
            row = len(ids) // ID_BYTES
            ids += key
            results.append(row)
            if free >= 0:
                table[free] = row + 1
                continue
            table[slot] = row + 1
            self._used += 1
            if self._used * 3 >= (mask + 1) * 2:
                self._rebuild((mask + 1) * (2 if len(self) * 3 >= mask + 1 else 1))
                table, mask = self._table, self._mask
        return results

    def remove(self, key: bytes) -> int:
        """Remove ``key``; its row (now dead), or -1 if it was not there."""
        row = self.find(key)
        if row < 0:
            return -1
        table, mask = self._table, self._mask
        slot = hash(key) & mask
        while table[slot] != row + 1:  # the slot find() stopped at, along the same chain
            slot = (slot + 1) & mask
        table[slot] = _GONE
        self._dead.add(row)
        return row

    def key(self, row: int) -> bytes:
        return bytes(self._ids[row * ID_BYTES : (row + 1) * ID_BYTES])

    def live_rows(self) -> Iterator[int]:
        """Rows not removed, in the order they were added."""
        if not self._dead:
            return iter(range(self.rows))
        dead = self._dead
        return (row for row in range(self.rows) if row not in dead)

    def reserve(self, count: int) -> None:
        """Size the table for ``count`` live ids (a bulk load then never rebuilds it)."""
        slots = self._mask + 1
        while count * 3 >= slots * 2:
            slots *= 2
        if slots != self._mask + 1:
            self._rebuild(slots)

    def memory(self) -> int:
        """Bytes held by the ids and the table."""
        return len(self._ids) + self._table.itemsize * len(self._table)

    def _rebuild(self, slots: int) -> None:
        table = self._table = array("I", bytes(4 * slots))
        mask = self._mask = slots - 1
        self._used = 0
        ids = self._ids
        for row in self.live_rows():
            slot = hash(bytes(ids[row * ID_BYTES : (row + 1) * ID_BYTES])) & mask
            while table[slot]:
                slot = (slot + 1) & mask
            table[slot] = row + 1
            self._used += 1
