"""Check: verify a repository's structure and, optionally, every byte (``stcore check``).

The structural check reads every index object from the backend (never the cache), then makes
sure every indexed pack exists and is long enough, every snapshot's manifest reads, and every
tree and data blob a snapshot references is indexed. ``read_data`` also reads every pack whole
and verifies its hash, its trailer, and every blob in it against its id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs

from stcore.errors import CorruptObjectError, ObjectNotFoundError, SnapshotNotFoundError
from stcore.interfaces import ProgressCallback, no_progress
from stcore.models import IndexEntry
from stcore.repo.format import (
    PACK_FOOTER,
    decode_pack_footer,
    decode_pack_trailer,
    hash_id,
    object_key,
)
from stcore.repo.store import Store


@attrs.frozen(kw_only=True)
class CheckResult:
    snapshots: int
    packs: int
    blobs: int
    read_data: bool
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def __repr__(self) -> str:
        return (
            f"<CheckResult {len(self.errors)} errors: {self.snapshots} snapshots, "
            f"{self.packs} packs, {self.blobs} blobs{', data read' if self.read_data else ''}>"
        )


def check(
    store: Store, *, read_data: bool = False, progress: ProgressCallback | None = None
) -> CheckResult:
    """Verify structure (every referenced blob indexed, every indexed pack present and large
    enough) and, with ``read_data``, every byte of every pack against its hashes."""
    progress = progress or no_progress
    errors: list[str] = []
    packs = store.object_sizes("data/")
    try:
        index = store.load_index(cached=False)
    except (CorruptObjectError, ObjectNotFoundError) as exc:
        return CheckResult(
            snapshots=0, packs=len(packs), blobs=0, read_data=read_data, errors=(str(exc),)
        )
    store.set_index(index)
    for entry in index.values():
        size = packs.get(entry.pack_id.hex())
        if size is None:
            errors.append(
                f"pack {object_key('data', entry.pack_id)} is missing "
                f"(needed by blob {entry.blob_id.hex()})"
            )
        elif entry.offset + entry.stored_length + PACK_FOOTER.size > size:
            errors.append(
                f"pack {object_key('data', entry.pack_id)} is truncated "
                f"(blob {entry.blob_id.hex()} lies past its end)"
            )
    snapshot_ids = store.snapshot_ids()
    seen_trees: set[bytes] = set()
    for snapshot_id in snapshot_ids:
        try:
            manifest = store.load_manifest(snapshot_id)
        except (CorruptObjectError, SnapshotNotFoundError) as exc:
            errors.append(str(exc))
            continue
        for summary in manifest.sources.values():
            errors.extend(
                f"snapshot {snapshot_id}, source {summary.name}: {problem}"
                for problem in _check_tree(store, summary.root, index, seen_trees)
            )
    if read_data:
        for pack_hex, size in sorted(packs.items()):
            errors.extend(_check_pack(store, pack_hex, size, index))
            progress("bytes", size)
    return CheckResult(
        snapshots=len(snapshot_ids),
        packs=len(packs),
        blobs=len(index),
        read_data=read_data,
        errors=tuple(errors),
    )


def _check_tree(
    store: Store, tree_id: bytes, index: Mapping[bytes, IndexEntry], seen: set[bytes]
) -> Iterator[str]:
    if tree_id in seen:
        return
    seen.add(tree_id)
    if tree_id not in index:
        yield f"tree {tree_id.hex()} is not in the index"
        return
    try:
        nodes = store.read_tree(tree_id)
    except (CorruptObjectError, ObjectNotFoundError) as exc:
        yield f"tree {tree_id.hex()} cannot be read: {exc}"
        return
    for node in nodes:
        for blob_id in node.content:
            if blob_id not in index:
                yield f"{node.name}: data blob {blob_id.hex()} is not in the index"
        if node.kind == "dir" and node.subtree is not None:
            yield from _check_tree(store, node.subtree, index, seen)


def _check_pack(
    store: Store, pack_hex: str, size: int, index: Mapping[bytes, IndexEntry]
) -> list[str]:
    key = object_key("data", pack_hex)
    try:
        body = store.backend.read(key)
    except ObjectNotFoundError:
        return [f"pack {key} disappeared during the check"]
    if hash_id(body).hex() != pack_hex:
        problems = [f"pack {key} does not match its hash (its bytes were changed)"]
    else:
        problems = []
    try:
        trailer_length = decode_pack_footer(body[-PACK_FOOTER.size :], len(body))
        trailer_start = len(body) - PACK_FOOTER.size - trailer_length
        blobs = decode_pack_trailer(store.codec, body[trailer_start : len(body) - PACK_FOOTER.size])
    except CorruptObjectError as exc:
        return [*problems, f"pack {key}: {exc}"]
    for blob in blobs:
        stored = body[blob.offset : blob.offset + blob.stored_length]
        try:
            store.codec.unseal_blob(blob.blob_id, stored, blob.raw_length)
        except CorruptObjectError as exc:
            problems.append(f"pack {key}, blob {blob.blob_id.hex()}: {exc}")
        entry = index.get(blob.blob_id)
        if entry is not None and entry.pack_id.hex() == pack_hex and entry.offset != blob.offset:
            problems.append(f"pack {key}: index and trailer disagree on {blob.blob_id.hex()}")
    return problems
