"""Repair: rebuild the index from the packs, salvage damaged packs, rewrite snapshots that lost
data (``stcore repair index|packs|snapshots``).

- ``repair index`` reads every pack's own trailer and writes one index object that lists every
  readable blob; entries of packs whose trailer cannot be read are carried over from the old
  index where it still reads. Then the old index objects go. Run it when check or prune says
  the index does not account for the packs.
- ``repair packs`` reads damaged packs (named, or those check recorded) whole, stores every
  blob that still verifies into new packs, and deletes the damaged packs.
- ``repair snapshots`` rewrites each snapshot that references blobs no sound copy of which is
  stored: a file loses the chunks from the first missing one on (truncated; removed if nothing
  is left), a directory whose listing is lost is removed. The new snapshot is tagged
  ``repaired``; ``forget`` also removes the original.

All three take the exclusive lock (repair snapshots the shared one, as a backup does).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import attrs
import msgspec

from stcore.errors import (
    ConfigError,
    CorruptObjectError,
    ObjectNotFoundError,
    SnapshotNotFoundError,
)
from stcore.interfaces import ProgressCallback, no_progress
from stcore.models import IndexEntry, SnapshotManifest, SourceSummary, TreeNode, new_snapshot_id
from stcore.repo.damage import load_damage, save_damage
from stcore.repo.format import PackedBlob, encode_index, encode_tree, object_key
from stcore.repo.index import BlobIndex
from stcore.repo.locks import DEFAULT_LOCK_WAIT, EXCLUSIVE_LOCK_WAIT, repository_lock
from stcore.repo.packer import Packer
from stcore.repo.store import Store

REPAIRED_TAG = "repaired"


@attrs.frozen(kw_only=True)
class RepairIndexResult:
    """What ``repair index`` found and wrote."""

    packs: int
    blobs: int
    #: packs whose trailer cannot be read (their old index entries were kept where readable)
    unreadable: tuple[str, ...]
    indexes_removed: int
    dry_run: bool = False

    def __repr__(self) -> str:
        return (
            f"<RepairIndexResult {self.blobs} blobs in {self.packs} packs, "
            f"{len(self.unreadable)} unreadable, {self.indexes_removed} old indexes removed>"
        )


@attrs.frozen(kw_only=True)
class RepairPacksResult:
    """What ``repair packs`` salvaged."""

    packs_repaired: tuple[str, ...]
    blobs_salvaged: int
    blobs_lost: int

    def __repr__(self) -> str:
        return (
            f"<RepairPacksResult {len(self.packs_repaired)} packs: {self.blobs_salvaged} blobs "
            f"salvaged, {self.blobs_lost} lost>"
        )


@attrs.frozen(kw_only=True)
class SnapshotRepair:
    """One snapshot that lost data: what changed and, unless a dry run, its replacement."""

    snapshot_id: str
    changes: tuple[str, ...]
    new_id: str | None = None


@attrs.frozen(kw_only=True)
class RepairSnapshotsResult:
    snapshots_checked: int
    repaired: tuple[SnapshotRepair, ...]
    forgotten: tuple[str, ...] = ()
    dry_run: bool = False

    def __repr__(self) -> str:
        return (
            f"<RepairSnapshotsResult {len(self.repaired)} of {self.snapshots_checked} snapshots "
            f"{'need repair' if self.dry_run else 'repaired'}>"
        )


def _entry(pack_id: bytes, blob: PackedBlob) -> IndexEntry:
    return IndexEntry(
        blob_id=blob.blob_id,
        blob_type=blob.blob_type,
        pack_id=pack_id,
        offset=blob.offset,
        stored_length=blob.stored_length,
        raw_length=blob.raw_length,
    )


def _write_index(store: Store, entries: list[IndexEntry]) -> str:
    if not entries:
        return ""
    return object_key(
        "index", store.write_content_addressed("index", encode_index(store.codec, entries))
    )


def _delete(store: Store, key: str) -> None:
    try:
        store.backend.delete(key)
    except ObjectNotFoundError:
        pass


def _rebuild_index(store: Store, *, dry_run: bool, progress: ProgressCallback) -> RepairIndexResult:
    packs = store.pack_sizes()
    old_keys = store.list_keys("index/")
    old = store.load_index(cached=False, on_damaged=lambda key, exc: None)
    by_pack: dict[bytes, list[IndexEntry]] = {}
    for entry in old.all_entries():
        by_pack.setdefault(entry.pack_id, []).append(entry)
    entries: list[IndexEntry] = []
    unreadable: list[str] = []
    for pack_hex, size in sorted(packs.items()):
        pack_id = bytes.fromhex(pack_hex)
        try:
            blobs = store.read_pack_trailer(pack_hex, size)
        except (CorruptObjectError, ObjectNotFoundError) as exc:
            unreadable.append(str(exc))
            entries.extend(by_pack.get(pack_id, ()))  # what the old index knew of it
            continue
        entries.extend(_entry(pack_id, blob) for blob in blobs)
        progress("bytes", size)
    result = RepairIndexResult(
        packs=len(packs),
        blobs=len({e.blob_id for e in entries}),
        unreadable=tuple(unreadable),
        indexes_removed=0 if dry_run else len(old_keys),
        dry_run=dry_run,
    )
    if dry_run:
        return result
    new_key = _write_index(store, entries)
    removed = 0
    for key in old_keys:
        if key != new_key:
            _delete(store, key)
            removed += 1
    store.set_index(BlobIndex(entries))
    return attrs.evolve(result, indexes_removed=removed)


def repair_index(
    store: Store,
    *,
    dry_run: bool = False,
    wait: float = EXCLUSIVE_LOCK_WAIT,
    progress: ProgressCallback | None = None,
) -> RepairIndexResult:
    """Rebuild the index from the packs' trailers; see the module docstring."""
    with repository_lock(store.backend, exclusive=True, purpose="repair index", wait=wait):
        return _rebuild_index(store, dry_run=dry_run, progress=progress or no_progress)


def _pack_id(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a pack id (hex, as `stcore check` names it)") from None


def repair_packs(
    store: Store,
    pack_ids: Iterable[str] = (),
    *,
    wait: float = EXCLUSIVE_LOCK_WAIT,
    progress: ProgressCallback | None = None,
) -> RepairPacksResult:
    """Salvage the blobs that still verify from damaged packs (``pack_ids``, hex, or those check
    recorded as holding damaged copies), store them in new packs and delete the damaged packs."""
    progress = progress or no_progress
    damage = load_damage(store.cache_dir)
    wanted = {_pack_id(p) for p in pack_ids} or {p for packs in damage.values() for p in packs}
    with repository_lock(store.backend, exclusive=True, purpose="repair packs", wait=wait):
        index = store.load_index(cached=False, on_damaged=lambda key, exc: None)
        store.set_index(index)
        sizes = store.pack_sizes()
        wanted = {p for p in wanted if p.hex() in sizes}
        by_pack: dict[bytes, list[IndexEntry]] = {}
        for entry in index.all_entries():
            if entry.pack_id in wanted:
                by_pack.setdefault(entry.pack_id, []).append(entry)
        packer = Packer(
            store.backend, store.codec, pack_size=store.config.pack_size, workers=store.workers
        )
        salvaged = lost = 0
        try:
            for pack_id in sorted(wanted):
                key = object_key("data", pack_id)
                body = store.backend.read(key)
                located = {e.blob_id: e for e in by_pack.get(pack_id, ())}
                try:
                    for blob in store.read_pack_trailer(pack_id.hex(), len(body)):
                        located.setdefault(blob.blob_id, _entry(pack_id, blob))
                except CorruptObjectError:
                    pass  # the index entries are all we know of it
                for entry in located.values():
                    stored = body[entry.offset : entry.offset + entry.stored_length]
                    try:
                        data = store.codec.unseal_blob(entry.blob_id, stored, entry.raw_length)
                    except CorruptObjectError:
                        lost += 1
                        continue
                    if not packer.is_known(entry.blob_id):
                        packer.add(entry.blob_id, entry.blob_type, data)
                        salvaged += 1
                progress("bytes", len(body))
            new_entries = list(packer.finish().values())
        except BaseException:
            packer.close()
            raise
        if new_entries:
            store.write_content_addressed("index", encode_index(store.codec, new_entries))
        for pack_id in wanted:
            _delete(store, object_key("data", pack_id))
        _rebuild_index(store, dry_run=False, progress=no_progress)
    remaining = {b: packs - wanted for b, packs in damage.items() if packs - wanted}
    save_damage(store.cache_dir, remaining)
    return RepairPacksResult(
        packs_repaired=tuple(sorted(p.hex() for p in wanted)),
        blobs_salvaged=salvaged,
        blobs_lost=lost,
    )


@attrs.define
class _Rewriter:
    """Rewrites trees bottom-up without the blobs that have no sound copy."""

    store: Store
    packer: Packer
    damaged: dict[bytes, set[bytes]]
    #: False for a dry run: nothing is packed, only the changes are listed
    write: bool = True
    #: tree id -> (new tree id, or None when the listing is lost)
    done: dict[bytes, bytes | None] = attrs.field(factory=dict)
    changes: list[str] = attrs.field(factory=list)

    def sound(self, blob_id: bytes) -> bool:
        index = self.store.index
        if blob_id not in index:
            return False
        packs = self.damaged.get(blob_id)
        return packs is None or index.avoid_packs(blob_id, packs)

    def rewrite(self, root: bytes, where: str) -> bytes | None:
        """The id of ``root`` rewritten (the same id when nothing was lost), None if lost."""
        stack: list[tuple[bytes, str, list[TreeNode] | None]] = [(root, where, None)]
        while stack:
            tree_id, path, nodes = stack.pop()
            if tree_id in self.done:
                continue
            if nodes is None:
                try:
                    nodes = self.store.read_tree(tree_id) if self.sound(tree_id) else None
                except (CorruptObjectError, ObjectNotFoundError):
                    nodes = None
                if nodes is None:
                    self.done[tree_id] = None
                    continue
                pending = [
                    (n.subtree, f"{path}/{n.name}", None)
                    for n in nodes
                    if n.kind == "dir" and n.subtree is not None and n.subtree not in self.done
                ]
                if pending:
                    stack.append((tree_id, path, nodes))
                    stack.extend(pending)
                    continue
            self.done[tree_id] = self._rebuild(tree_id, path, nodes)
        return self.done[root]

    def _rebuild(self, tree_id: bytes, path: str, nodes: list[TreeNode]) -> bytes:
        kept: list[TreeNode] = []
        for node in nodes:
            name = f"{path}/{node.name}"
            if node.kind == "dir" and node.subtree is not None:
                subtree = self.done.get(node.subtree)
                if subtree is None:
                    self.changes.append(f"removed directory {name} (its listing is lost)")
                    continue
                kept.append(msgspec.structs.replace(node, subtree=subtree))
            elif node.kind == "file":
                good = 0
                while good < len(node.content) and self.sound(node.content[good]):
                    good += 1
                if good == len(node.content):
                    kept.append(node)
                elif good == 0:
                    self.changes.append(f"removed file {name} (its data is lost)")
                else:
                    content = node.content[:good]
                    size = sum(self.store.index[b].raw_length for b in content)
                    self.changes.append(f"truncated file {name} to {size} of {node.size} bytes")
                    kept.append(msgspec.structs.replace(node, content=content, size=size))
            else:
                kept.append(node)
        if kept == nodes:
            return tree_id
        data = encode_tree(kept)
        new_id = self.store.codec.blob_id(data)
        if self.write and new_id not in self.store.index and not self.packer.is_known(new_id):
            self.packer.add(new_id, "tree", data)
        return new_id


def repair_snapshots(
    store: Store,
    *,
    dry_run: bool = False,
    forget: bool = False,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> RepairSnapshotsResult:
    """Rewrite the snapshots that reference lost data; see the module docstring."""
    with repository_lock(
        store.backend, exclusive=False, purpose="repair snapshots", wait=lock_wait
    ):
        store.reload_index()
        packer = Packer(
            store.backend, store.codec, pack_size=store.config.pack_size, workers=store.workers
        )
        rewriter = _Rewriter(
            store=store, packer=packer, damaged=load_damage(store.cache_dir), write=not dry_run
        )
        plans: list[tuple[SnapshotManifest, dict[str, SourceSummary], tuple[str, ...]]] = []
        checked = 0
        try:
            for snapshot_id in store.snapshot_ids():
                try:
                    manifest = store.load_manifest(snapshot_id)
                except (CorruptObjectError, SnapshotNotFoundError):
                    continue  # a lost manifest cannot be rebuilt; check names it
                checked += 1
                before = len(rewriter.changes)
                sources: dict[str, SourceSummary] = {}
                for name, summary in manifest.sources.items():
                    root = rewriter.rewrite(summary.root, name)
                    if root is None:
                        rewriter.changes.append(f"emptied source {name} (its listing is lost)")
                        root = _empty_tree(store, packer if not dry_run else None)
                    sources[name] = attrs.evolve(summary, root=root)
                changes = tuple(rewriter.changes[before:])
                if changes:
                    plans.append((manifest, sources, changes))
            entries = list(packer.finish().values()) if not dry_run else []
        except BaseException:
            packer.close()
            raise
        if dry_run:
            packer.close()
            repairs = tuple(SnapshotRepair(snapshot_id=m.id, changes=c) for m, _, c in plans)
            return RepairSnapshotsResult(snapshots_checked=checked, repaired=repairs, dry_run=True)
        if entries:
            store.write_content_addressed("index", encode_index(store.codec, entries))
            store.index.update(entries)
        repaired: list[SnapshotRepair] = []
        forgotten: list[str] = []
        for manifest, sources, changes in plans:
            new = attrs.evolve(
                manifest,
                id=new_snapshot_id(manifest.time + dt.timedelta(seconds=1)),
                tags=tuple(sorted({*manifest.tags, REPAIRED_TAG})),
                sources=sources,
                errors=tuple([*manifest.errors, *changes][:100]),
                partial=True,
            )
            store.write_manifest(new)
            repaired.append(SnapshotRepair(snapshot_id=manifest.id, changes=changes, new_id=new.id))
            if forget and store.delete_manifest(manifest.id):
                forgotten.append(manifest.id)
    return RepairSnapshotsResult(
        snapshots_checked=checked, repaired=tuple(repaired), forgotten=tuple(forgotten)
    )


def _empty_tree(store: Store, packer: Packer | None) -> bytes:
    data = encode_tree([])
    tree_id = store.codec.blob_id(data)
    if packer is not None and tree_id not in store.index and not packer.is_known(tree_id):
        packer.add(tree_id, "tree", data)
    return tree_id
