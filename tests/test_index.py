"""The in-memory index (``BlobIndex``): a hash table over typed arrays, checked against a dict.

Random sequences of adds, duplicate adds, discards and ``avoid_packs`` run on the index and on a
plain dict model; after every step both agree on membership, entries, copies, length, iteration
order and per-type sizes. Ids share prefixes and collide in the table on purpose (few distinct
first bytes), and the table is forced through many rebuilds.
"""

from __future__ import annotations

import os
from unittest import mock

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stcore.builtins.compressors import NoCompressor
from stcore.builtins.encryptors import NoEncryptor
from stcore.models import IndexEntry
from stcore.repo.format import Codec, decode_index, encode_index
from stcore.repo.idtable import IdTable
from stcore.repo.index import BlobIndex

_ids = st.builds(
    lambda head, tail: bytes([head]) * 30 + bytes([tail, head]),
    st.integers(0, 3),
    st.integers(0, 40),
)
_packs = st.sampled_from([bytes([n]) * 32 for n in range(4)])
_entries = st.builds(
    IndexEntry,
    blob_id=_ids,
    blob_type=st.sampled_from(["data", "tree"]),
    pack_id=_packs,
    offset=st.integers(0, 2**32 - 1),
    stored_length=st.integers(0, 2**32 - 1),
    raw_length=st.integers(0, 2**32 - 1),
)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), _entries),
        st.tuples(st.just("discard"), _ids),
        st.tuples(st.just("avoid"), _ids, st.sets(_packs, max_size=3)),
    ),
    max_size=120,
)


class Model:
    def __init__(self) -> None:
        self.first: dict[bytes, IndexEntry] = {}
        self.copies: dict[bytes, list[IndexEntry]] = {}

    def add(self, entry: IndexEntry) -> bool:
        known = self.first.get(entry.blob_id)
        if known is not None:
            if known.pack_id != entry.pack_id:
                self.copies.setdefault(entry.blob_id, []).append(entry)
            return False
        self.first[entry.blob_id] = entry
        return True

    def discard(self, blob_id: bytes) -> None:
        self.first.pop(blob_id, None)
        self.copies.pop(blob_id, None)

    def avoid(self, blob_id: bytes, packs: set[bytes]) -> bool:
        if blob_id not in self.first:
            return False
        if self.first[blob_id].pack_id not in packs:
            return True
        for number, copy in enumerate(self.copies.get(blob_id, ())):
            if copy.pack_id not in packs:
                self.copies[blob_id][number] = self.first.pop(blob_id)
                self.add(copy)
                return True
        return False


@given(ops=_ops)
@settings(max_examples=300, deadline=None)
def test_the_index_agrees_with_a_dict_after_every_step(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    index, model = BlobIndex(), Model()
    for op in ops:
        if op[0] == "add":
            assert index.add(op[1]) == model.add(op[1])
        elif op[0] == "discard":
            index.discard(op[1])
            model.discard(op[1])
        else:
            assert index.avoid_packs(op[1], op[2]) == model.avoid(op[1], op[2])
        assert len(index) == len(model.first)
        assert list(index) == list(model.first)  # the order blobs were made current
        for blob_id, entry in model.first.items():
            assert blob_id in index
            assert index[blob_id] == entry
            assert index.location(blob_id) == (entry.pack_id, entry.offset)
            assert index.copies(blob_id) == model.copies.get(blob_id, [])
        assert index.location(b"\xff" * 32) is None or b"\xff" * 32 in model.first
    assert index.raw_bytes() == sum(e.raw_length for e in model.first.values())
    assert index.raw_bytes("tree") == sum(
        e.raw_length for e in model.first.values() if e.blob_type == "tree"
    )
    located = {(b, p, o, s) for b, p, o, s in index.locations()}
    expected = {(e.blob_id, e.pack_id, e.offset, e.stored_length) for e in model.first.values()}
    expected |= {
        (e.blob_id, e.pack_id, e.offset, e.stored_length)
        for copies in model.copies.values()
        for e in copies
    }
    assert located == expected
    merged = BlobIndex()
    merged.merge(index)
    assert list(merged.fields()) == list(index.fields())
    # into an index that knows some of the blobs already: as adding each location in turn
    into, one_by_one = BlobIndex(), BlobIndex()
    for entry in list(model.first.values())[::2] + [e for c in model.copies.values() for e in c]:
        moved = attrs.evolve(entry, pack_id=entry.pack_id[::-1])
        into.add(moved)
        one_by_one.add(moved)
    into.merge(index)
    for row in index.fields():
        one_by_one.add_fields(*row)
    assert list(into.fields()) == list(one_by_one.fields())
    codec = Codec(compressors={0: NoCompressor()}, compressor=NoCompressor(),
                  encryptor=NoEncryptor())  # fmt: skip
    encoded = encode_index(codec, index)
    assert encoded == encode_index(codec, list(index.all_entries()))
    assert list(decode_index(codec, encoded).rows()) == list(index.fields())


def test_many_ids_survive_rebuilds_and_tombstones() -> None:
    index = BlobIndex()
    ids = [os.urandom(32) for _ in range(20_000)]
    for n, blob_id in enumerate(ids):
        index.add_fields(blob_id, 0, b"p" * 32, n, n, n)
    for blob_id in ids[::2]:
        index.discard(blob_id)
    assert len(index) == len(ids) // 2
    assert not any(blob_id in index for blob_id in ids[::2])
    assert all(blob_id in index for blob_id in ids[1::2])  # chains run on past tombstones
    for blob_id in ids[::2]:  # into tombstones
        index.add_fields(blob_id, 1, b"q" * 32, 1, 2, 3)
    assert len(index) == len(ids)
    assert all(blob_id in index for blob_id in ids)
    assert index[ids[1]].offset == 1 and index[ids[0]].pack_id == b"q" * 32
    assert os.urandom(32) not in index and b"short" not in index and "text" not in index
    assert index.memory() / len(index) <= 100


def test_an_id_that_is_not_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        BlobIndex().add_fields(b"x" * 31, 0, b"p" * 32, 0, 0, 0)
    with pytest.raises(KeyError):
        BlobIndex()[b"x" * 32]


_rows = st.lists(
    st.tuples(
        _ids,
        st.integers(0, 1),
        st.integers(0, 3),
        st.integers(0, 2**32 - 1),
        st.integers(0, 9),
        st.integers(0, 9),
    ),
    max_size=80,
)


@given(objects=st.lists(_rows, max_size=4), batch=st.integers(1, 9), discards=st.lists(_ids))
@settings(max_examples=200, deadline=None)
def test_rows_added_in_bulk_give_the_index_added_one_by_one(
    objects: list[list[tuple[bytes, int, int, int, int, int]]],
    batch: int,
    discards: list[bytes],
) -> None:
    """Loading index objects (``add_rows``, in batches) is ``add_fields`` row by row: the same
    rows, copies, order and pack numbers, tombstones included."""
    packs = [bytes([n]) * 32 for n in range(4)]
    bulk, single = BlobIndex(), BlobIndex()
    for blob_id in discards:  # rows removed before the load: tombstones to reuse
        for index in (bulk, single):
            index.add_fields(blob_id, 0, packs[0], 0, 0, 0)
            index.discard(blob_id)
    with mock.patch("stcore.repo.index._BATCH", batch):
        for rows in objects:
            object_packs = packs[::-1]  # an object numbers its packs its own way
            bulk.add_rows(object_packs, rows)
            for blob_id, code, number, offset, stored, raw in rows:
                single.add_fields(blob_id, code, object_packs[number], offset, stored, raw)
    assert list(bulk.fields()) == list(single.fields())
    assert list(bulk) == list(single) and len(bulk) == len(single)
    for blob_id in single:
        assert bulk[blob_id] == single[blob_id] and bulk.copies(blob_id) == single.copies(blob_id)


@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["insert_all", "remove"]), st.lists(_ids, max_size=30)),
        max_size=12,
    )
)
@settings(max_examples=200, deadline=None)
def test_inserts_in_batches_agree_with_a_dict(steps: list[tuple[str, list[bytes]]]) -> None:
    """``insert_all`` (and ``insert``, one key at a time through it) numbers rows as a dict of
    ids to rows would, across removals (tombstones reused) and rebuilds."""
    table, added = IdTable(), 0
    rows: dict[bytes, int] = {}
    for kind, keys in steps:
        if kind == "remove":
            for key in keys:
                assert table.remove(key) == rows.pop(key, -1)
            continue
        expected = []
        for key in keys:
            if key in rows:
                expected.append(-1 - rows[key])
            else:
                rows[key] = added
                expected.append(added)
                added += 1
        if len(keys) == 1:
            assert [table.insert(keys[0])] == expected
        else:
            assert table.insert_all(keys) == expected
        assert [table.find(key) for key in keys] == [rows[key] for key in keys]
    assert len(table) == len(rows) and list(table.live_rows()) == sorted(rows.values())
    assert table.rows == added
    with pytest.raises(ValueError, match="32 bytes"):
        table.insert_all([b"k" * 32, b"short"])
