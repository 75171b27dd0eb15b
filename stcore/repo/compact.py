"""Compact the index: merge many small index objects into one, as a backup ends.

Every backup writes one index object for the packs it added, so a repository backed up every
hour holds thousands of them, and opening it reads every one: on a remote, a request each
(measured: 100 backups, 100 GETs and half a second on loopback before the first byte of data).
Kopia compacts its index blobs as routine maintenance; restic merges them only when it prunes.
stcore merges as part of the backup that crosses a threshold: once more than
:data:`COMPACT_AT` index objects smaller than :data:`SMALL_INDEX_BYTES` exist, their entries
are written as one new index object and then they are deleted. A repository so holds at most
about ``COMPACT_AT`` small objects plus one per ``SMALL_INDEX_BYTES`` of index, and the
merge rewrites only small objects, never the large ones already merged. Sync carries the
merged object to remotes and removes what it replaced there (:mod:`stcore.sync`).

Nothing is lost at any instant. The new object is written before an old one is deleted, so a
reader finds every entry (twice for a moment, which the index ignores); a reader that listed an
object a compaction then deleted lists again (:meth:`~stcore.repo.store.Store.load_index`).
Only objects read whole and verified are merged and deleted: a damaged one stays for
``stcore check`` to report. Two backups compacting at once each write a complete object and
delete only what they read, so at worst an entry is kept twice. A failure leaves the old
objects in place and is the caller's to report; it never fails the backup that triggered it.
"""

from __future__ import annotations

import attrs

from stcore.errors import CorruptObjectError, ObjectNotFoundError
from stcore.repo.format import encode_index, index_entries, object_key
from stcore.repo.index import IndexRow
from stcore.repo.store import Store

#: merge once more than this many small index objects exist
COMPACT_AT = 16
#: index objects at least this big are left alone (about 170,000 blobs each)
SMALL_INDEX_BYTES = 8 * 1024 * 1024


@attrs.frozen(kw_only=True)
class CompactResult:
    """What a compaction merged: ``merged`` objects into ``written`` (its key)."""

    merged: int
    deleted: int
    entries: int
    written: str


def small_index_objects(store: Store, *, small: int = SMALL_INDEX_BYTES) -> list[str]:
    """The keys of the index objects smaller than ``small`` bytes, oldest listing order."""
    return sorted(info.key for info in store.backend.list("index/") if info.size < small)


def compact_index(
    store: Store, *, at: int = COMPACT_AT, small: int = SMALL_INDEX_BYTES
) -> CompactResult | None:
    """Merge the small index objects when there are more than ``at``; None if there were not.

    The caller holds a repository lock that keeps prune out (a backup's shared lock).
    """
    keys = small_index_objects(store, small=small)
    if len(keys) <= at:
        return None
    rows: dict[tuple[bytes, bytes], IndexRow] = {}
    merged: list[str] = []
    for key in keys:
        try:
            found = store.read_index_rows(key)
        except (CorruptObjectError, ObjectNotFoundError):
            continue  # damaged (check reports it) or merged meanwhile by another backup
        merged.append(key)
        for row in found:
            rows.setdefault((row[0], row[2]), row)  # one entry per blob and pack
    if len(merged) < 2:
        return None
    written = object_key(
        "index",
        store.write_content_addressed(
            "index", encode_index(store.codec, index_entries(rows.values()))
        ),
    )
    deleted = 0
    for key in merged:
        if key == written:
            continue  # the same entries in the same order: the merge wrote this very object
        try:
            store.backend.delete(key)
            deleted += 1
        except ObjectNotFoundError:
            pass  # another backup's compaction got there first
    return CompactResult(merged=len(merged), deleted=deleted, entries=len(rows), written=written)
