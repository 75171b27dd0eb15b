"""Prune: delete data no snapshot references, repack mostly-dead packs, rewrite the index
(``stcore prune``).

Runs under the repository's exclusive lock (:mod:`stcore.repo.locks`), so no backup is between
writing its packs and its manifest while prune decides what is unreferenced. The steps are
ordered so that a prune killed at any moment leaves a repository that ``check`` passes and the
next prune finishes:

1. find every blob the snapshots reference (walking their trees);
2. copy the live blobs of packs whose live share is below the threshold into new packs;
3. write one new index object describing every live blob (kept packs and new packs);
4. delete the old index objects;
5. delete the packs the new index does not mention (dead, repacked, or left by crashed writers).

Until step 3 nothing is deleted; after it, the old index objects and packs are redundant, and
deleting redundant objects in any order never breaks a snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import attrs

from stcore.errors import (
    ConfigError,
    CorruptObjectError,
    ObjectNotFoundError,
    PruneRefusedError,
    SnapshotNotFoundError,
)
from stcore.interfaces import Backend, StreamingBackend
from stcore.models import IndexEntry
from stcore.repo.format import encode_index, object_key
from stcore.repo.index import BlobIndex
from stcore.repo.locks import EXCLUSIVE_LOCK_WAIT, repository_lock
from stcore.repo.packer import Packer

if TYPE_CHECKING:
    from stcore.repo.store import Store

DEFAULT_REPACK_THRESHOLD = 0.5

REPAIR_HINT = "nothing was deleted; `stcore repair index` rebuilds the index from the packs"


def _account_for_everything(
    store: Store, packs: dict[str, int], ignored: Collection[str] = ()
) -> tuple[BlobIndex, set[bytes], list[str]]:
    """The index, every blob a snapshot references, and the snapshot ids, once prune has
    proved that the index accounts for every pack and every referenced blob.

    Prune decides what to delete from the index; an index that lost an object (or lists packs
    that are gone) would make it delete live data. So before anything is deleted: every index
    object must read, every snapshot and tree must read, every referenced blob must be indexed
    in a pack that exists, and every pack the index does not list is read (its trailer) to show
    it holds nothing a snapshot needs. Anything else stops prune with one line, deleting nothing.
    """
    try:
        index = store.load_index(cached=False)
    except (CorruptObjectError, ObjectNotFoundError) as exc:
        raise PruneRefusedError(f"prune stopped: {exc}; {REPAIR_HINT}") from exc
    store.set_index(index)
    snapshot_ids = [i for i in store.snapshot_ids() if i not in ignored]
    try:
        used = store.referenced_blobs(snapshot_ids)
    except (CorruptObjectError, ObjectNotFoundError, SnapshotNotFoundError) as exc:
        raise PruneRefusedError(
            f"prune stopped: {exc}; nothing was deleted. Run `stcore check`, then `stcore repair "
            "index` and `stcore repair snapshots`"
        ) from exc
    unindexed = [blob for blob in used if blob not in index]
    if unindexed:
        raise PruneRefusedError(
            f"prune stopped: {len(unindexed)} blobs that snapshots reference are not in the "
            f"index (e.g. {unindexed[0].hex()}); {REPAIR_HINT}"
        )
    indexed_packs = {entry.pack_id.hex() for entry in index.values()}
    lost = sorted(indexed_packs - set(packs))
    if lost:
        raise PruneRefusedError(
            f"prune stopped: the index lists {len(lost)} packs that are missing (e.g. "
            f"{object_key('data', lost[0])}); {REPAIR_HINT}, then `stcore repair snapshots`"
        )
    redundant: set[bytes] = set()  # referenced blobs found in packs the index does not list
    for pack_hex in sorted(set(packs) - indexed_packs):
        try:
            blobs = store.read_pack_trailer(pack_hex, packs[pack_hex])
        except (CorruptObjectError, ObjectNotFoundError) as exc:
            raise PruneRefusedError(
                f"prune stopped: pack {object_key('data', pack_hex)} is not in the index and "
                f"cannot be read ({exc}); {REPAIR_HINT} and salvages what it can"
            ) from exc
        redundant.update(blob.blob_id for blob in blobs if blob.blob_id in used)
    # Such a pack (a killed prune's repacking, two backups storing one blob) may go only if the
    # index's own copy of each of those blobs is really where the index says: its pack's
    # trailer must list it at that offset. Otherwise the unlisted pack may be the only copy.
    by_pack: dict[bytes, list[IndexEntry]] = {}
    for blob_id in redundant:
        entry = index[blob_id]
        by_pack.setdefault(entry.pack_id, []).append(entry)
    for pack_id, entries in by_pack.items():
        try:
            listed = {
                b.blob_id: b.offset
                for b in store.read_pack_trailer(pack_id.hex(), packs[pack_id.hex()])
            }
        except (CorruptObjectError, ObjectNotFoundError) as exc:
            raise PruneRefusedError(f"prune stopped: {exc}; {REPAIR_HINT}") from exc
        wrong = [e for e in entries if listed.get(e.blob_id) != e.offset]
        if wrong:
            raise PruneRefusedError(
                f"prune stopped: the index places blob {wrong[0].blob_id.hex()} in pack "
                f"{object_key('data', pack_id)}, which does not hold it; {REPAIR_HINT}"
            )
    return index, used, snapshot_ids


@attrs.frozen(kw_only=True)
class PruneResult:
    snapshots: int
    packs_before: int
    packs_deleted: int
    packs_repacked: int
    packs_written: int
    bytes_before: int
    bytes_after: int
    seconds: float
    #: temporaries of writes whose process died, removed (local repositories)
    abandoned_removed: int = 0

    @property
    def bytes_freed(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "bytes_freed": self.bytes_freed}

    def __repr__(self) -> str:
        return (
            f"<PruneResult freed {self.bytes_freed} bytes: {self.packs_deleted} of "
            f"{self.packs_before} packs deleted, {self.packs_repacked} repacked>"
        )


def prune(
    store: Store,
    *,
    repack_threshold: float = DEFAULT_REPACK_THRESHOLD,
    dry_run: bool = False,
    wait: float = EXCLUSIVE_LOCK_WAIT,
    progress: Callable[[str, int], None] | None = None,
    ignore_snapshots: Collection[str] = (),
) -> PruneResult:
    """Reclaim the space of data no snapshot references; see the module docstring.

    ``ignore_snapshots`` (a dry run only) counts as if those snapshots were forgotten already:
    what ``forget --prune --dry-run`` would free."""
    if ignore_snapshots and not dry_run:
        raise ConfigError("ignore_snapshots is for a dry run: forget them, then prune")
    progress = progress or (lambda event, amount: None)
    started = time.monotonic()
    backend = store.backend
    with repository_lock(backend, exclusive=True, purpose="prune", wait=wait):
        packs = store.pack_sizes()  # a stray file there is not ours: never deleted
        index, used, snapshot_ids = _account_for_everything(store, packs, set(ignore_snapshots))
        snapshot_count = len(snapshot_ids)
        by_pack: dict[bytes, list[IndexEntry]] = {}
        for entry in index.values():
            by_pack.setdefault(entry.pack_id, []).append(entry)
        keep_entries: list[IndexEntry] = []
        repack: list[IndexEntry] = []
        repacked_packs = 0
        for pack_id, entries in by_pack.items():
            live = [e for e in entries if e.blob_id in used]
            if not live:
                continue
            # The pack's real size, not the sum of its indexed blobs: once a prune keeps a pack,
            # the new index forgets its dead blobs, yet their bytes are still in the pack.
            total = packs.get(pack_id.hex()) or sum(e.stored_length for e in entries)
            share = sum(e.stored_length for e in live) / total if total else 1.0
            if share < repack_threshold:
                repack.extend(live)
                repacked_packs += 1
            else:
                keep_entries.extend(live)
        kept_packs = {e.pack_id.hex() for e in keep_entries}
        bytes_before = sum(packs.values())
        if dry_run:
            doomed = set(packs) - kept_packs
            return PruneResult(
                snapshots=snapshot_count,
                packs_before=len(packs),
                packs_deleted=len(doomed),
                packs_repacked=repacked_packs,
                packs_written=0,
                bytes_before=bytes_before,
                bytes_after=sum(packs[p] for p in kept_packs)
                + sum(e.stored_length for e in repack),
                seconds=time.monotonic() - started,
            )
        written_sizes: list[int] = []
        new_entries: list[IndexEntry] = []
        if repack:
            packer = Packer(
                backend,
                store.codec,
                pack_size=store.config.pack_size,
                workers=store.workers,
                on_pack_written=written_sizes.append,
            )
            try:
                # One range read per run of live blobs in each pack (thousands of database
                # pages would otherwise be as many requests), each blob verified against its id.
                types = {entry.blob_id: entry.blob_type for entry in repack}
                progress("total", sum(entry.raw_length for entry in repack))  # of "bytes"
                for blob_id, data in store.read_blobs(types):
                    packer.add(blob_id, types[blob_id], data)
                    progress("bytes", len(data))
                new_entries = list(packer.finish().values())
            except BaseException:
                packer.close()
                raise
        old_indexes = [info.key for info in backend.list("index/")]
        all_entries = keep_entries + new_entries
        new_index_key = ""
        if all_entries:
            new_index_id = store.write_content_addressed(
                "index", encode_index(store.codec, all_entries)
            )
            new_index_key = object_key("index", new_index_id)
        for key in old_indexes:
            if key != new_index_key:
                _delete(backend, key)
        live_packs = {e.pack_id.hex() for e in all_entries}
        deleted = 0
        for pack_hex in packs:
            if pack_hex not in live_packs:
                _delete(backend, object_key("data", pack_hex))
                deleted += 1
        # Cached blob frames stay valid: they are verified by blob id, wherever the blob lives.
        store.set_index(BlobIndex(all_entries))
        # No writer can run under the exclusive lock: what a crashed one left is garbage.
        abandoned = backend.discard_abandoned() if isinstance(backend, StreamingBackend) else 0
        bytes_after = sum(info.size for info in backend.list("data/"))
    return PruneResult(
        snapshots=snapshot_count,
        packs_before=len(packs),
        packs_deleted=deleted,
        packs_repacked=repacked_packs,
        packs_written=len(written_sizes),
        bytes_before=bytes_before,
        bytes_after=bytes_after,
        seconds=time.monotonic() - started,
        abandoned_removed=abandoned,
    )


def _delete(backend: Backend, key: str) -> None:
    try:
        backend.delete(key)
    except ObjectNotFoundError:
        pass  # already gone: a previous, interrupted prune got this far
